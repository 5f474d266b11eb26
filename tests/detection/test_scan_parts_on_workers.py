"""One model's scan split into parts that two real Celery workers run at once, with the findings of one scan."""
from __future__ import annotations

import time

import pytest

from monitor.detection.scanning import ScanPlan, prepare_scan, rewind_scanner, scan_model
from monitor.models import DetectorFinding, DetectorState, ScanShard
from monitor.tasks import scan_model_part, scan_model_queries
from tests.detection.helpers import flagged, model_with_attacks
from tests.workers import Worker, own_queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_for_parts(model, high: int, seconds: float = 120) -> list[ScanShard]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        parts = list(ScanShard.objects.filter(model=model))
        if parts and all(part.watermark_id == high and part.lease_until is None for part in parts):
            return parts
        time.sleep(0.3)
    raise AssertionError(f"parts did not reach #{high}: {[(p.index, p.watermark_id) for p in parts]}")


def test_two_workers_scan_parts_of_one_model_at_once_and_find_what_one_scan_finds(settings):
    model = model_with_attacks()
    scan_model(model, count=1)
    one = flagged(model)
    assert set(model.live.attackers) <= {client for _, client in one}

    with own_queue() as queue:
        other = f"{queue}-b"
        workers = [Worker(queue), Worker(other)]
        try:
            # Parts sent to each worker's own queue: both scan the model at the same time.
            rewind_scanner(model, 0)
            DetectorFinding.objects.filter(model=model).delete()
            plan = prepare_scan(model, count=2)
            assert isinstance(plan, ScanPlan) and [part.index for part in plan.parts] == [0, 1, 2]
            for part in plan.parts:
                scan_model_part.apply_async((model.pk, part.index, plan.upto), queue=(queue, other)[part.index % 2])
            done = wait_for_parts(model, plan.upto)
            assert len({part.held_by for part in done}) == 2, [part.held_by for part in done]
            assert flagged(model) == one

            # The beat's task plans the parts itself (SCAN_SHARDS) and queues one task per part.
            rewind_scanner(model, 0)
            DetectorFinding.objects.filter(model=model).delete()
            settings.SCAN_SHARDS = 2
            planned = scan_model_queries(model.pk)
            assert planned["parts"] == 3
            wait_for_parts(model, planned["upto"])
            assert flagged(model) == one
            assert DetectorState.objects.get(model=model).watermark_id == planned["upto"]
        finally:
            outputs = [worker.stop() for worker in workers]
            print(*outputs, sep="\n---- next worker ----\n")  # shown by pytest when the test fails
    assert not any("Traceback" in output for output in outputs), outputs
