"""Attackers at a benign client's pace over several days, scanned once a day as the beat would: the block tests carry
each client's evidence in the scanner state from scan to scan (up to 30 days), so a sweep or a candidate tester
that never bursts is still found. And calibration on a window larger than its row cap samples whole clients over the
whole window rather than the window's first hours."""
from __future__ import annotations

import time

import numpy as np
import pytest

from monitor.demo import traffic as gen
from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model
from monitor.detection.context import state_for
from monitor.detection.scanning import scan_model
from monitor.models import AlertAccount, DetectorState, QueryLog
from monitor.platform.crypto import data_fernet
from tests.detection.helpers import store
from tests.factories import make_audited_model

pytestmark = pytest.mark.django_db
DAY = 86_400.0


def incident_clients(model) -> set[str]:
    return set(AlertAccount.objects.filter(alert__model=model, alert__source="detector")
               .values_list("client_id", flat=True))


def day_slices(traffic: gen.Traffic, start: float, days: int):
    for day in range(days):
        keep = (traffic.timestamps >= start + day * DAY) & (traffic.timestamps < start + (day + 1) * DAY)
        yield gen.Traffic(features=traffic.features[keep], client_ids=traffic.client_ids[keep],
                          timestamps=traffic.timestamps[keep], origin_ids=traffic.origin_ids[keep])


def warm_model(now: float, *, per_day: float = 100):
    """A model calibrated on a clean reference day (honest clients at `per_day`), its watermark after it. The
    fingerprint key is fixed: which cells a query falls in depends on it, and a reproducible test needs one."""
    model = make_audited_model(n=600)
    DetectorState.objects.create(model=model, fingerprint_key=data_fernet().encrypt(b"slow-attackers-test-key-32-bytes"))
    reference = build_traffic(model, Plan(benign_clients=60, hours=24, seed=31, queries_per_day=per_day),
                              end=now - 4 * DAY)
    store(model, reference)
    calibrate_model(model)
    DetectorState.objects.filter(model=model).update(watermark_id=QueryLog.objects.filter(model=model).count())
    return model


def test_a_sweep_spread_over_three_days_at_a_benign_pace_is_found():
    now = time.time() // 3600 * 3600
    model = warm_model(now, per_day=200)
    traffic = build_traffic(model, Plan(benign_clients=60, hours=72, seed=32, attacks=("slow_sweep",), targets=10,
                                        queries_per_day=200), end=now - 60)
    attacker = next(iter(traffic.attackers))
    per_day = {client: (traffic.client_ids == client).sum() / 3 for client in set(traffic.client_ids.tolist())}
    assert per_day[attacker] <= max(v for c, v in per_day.items() if c != attacker)  # no busier than honest clients
    def busiest_hour(client: str) -> int:
        return int(np.unique(np.floor(traffic.timestamps[traffic.client_ids == client] / 3600), return_counts=True)[1].max())

    assert busiest_hour(attacker) <= max(busiest_hour(c) for c in traffic.benign_clients)  # and no burst
    for day in day_slices(traffic, now - 60 - 3 * DAY, 3):
        store(model, day)
        scan_model(model)
    assert attacker in incident_clients(model)
    # 60 clients calibrated on 60 client-days, far below the 1,000 that hold the budget (the page says so).
    assert len(incident_clients(model) - {attacker}) <= 2


def test_evidence_too_thin_for_one_day_adds_up_over_several():
    """Fifteen candidate records a day: one day is below what a block test needs; four days are not."""
    now = time.time() // 3600 * 3600
    model = warm_model(now)
    data = {d.kind: d.load() for d in model.datasets.all()}
    start = now - 60 - 4 * DAY
    benign = build_traffic(model, Plan(benign_clients=60, hours=96, seed=33, queries_per_day=100), end=now - 60)
    slow = gen.low_and_slow(data["members"].X, data["nonmembers"].X, n_candidates=60, member_share=0.8,
                            client_id="patient-attacker", seed=34, start=start, days=4)
    traffic = gen.combine(benign, slow)
    caught_on = None
    for day, part in enumerate(day_slices(traffic, start, 4), start=1):
        store(model, part)
        scan_model(model)
        if caught_on is None and "patient-attacker" in incident_clients(model):
            caught_on = day
    assert caught_on is not None and caught_on >= 2, caught_on


def test_calibration_beyond_its_row_cap_samples_whole_clients_over_the_whole_window(settings):
    now = time.time() // 3600 * 3600
    model = make_audited_model(n=600)
    traffic = build_traffic(model, Plan(benign_clients=80, hours=48, seed=35, queries_per_day=100), end=now - 60)
    store(model, traffic)
    settings.DETECTOR_CALIBRATION_ROWS = len(traffic) // 3
    calibrate_model(model)
    window = state_for(model).calibration_window
    assert window["client_sample"] is not None and window["client_sample"][1] == 3
    assert window["queries"] <= 1.25 * settings.DETECTOR_CALIBRATION_ROWS
    assert 5 <= window["clients"] < 80
    # The sample spans both days: each sampled client counts for about two client-days.
    assert window["client_days"] >= 1.8 * window["clients"]
