"""A real Celery worker, on the configured broker, runs a task whose effect lands in the database."""
from __future__ import annotations

import time
import uuid

import pytest

from monitor.models import WorkerHeartbeat
from monitor.tasks import record_heartbeat
from tests.workers import Worker, own_queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def worker():
    with own_queue() as queue:
        process = Worker(queue)
        yield queue
        output = process.stop()
        if "Traceback" in output:
            print(output)


def test_a_real_worker_runs_a_task_and_writes_the_database(worker):
    name = f"probe-{uuid.uuid4().hex[:6]}"
    record_heartbeat.delay(name)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if WorkerHeartbeat.objects.filter(name=name).exists():
            break
        time.sleep(0.5)
    heartbeat = WorkerHeartbeat.objects.get(name=name)
    assert heartbeat.hostname
    assert abs(time.time() - heartbeat.seen_at.timestamp()) < 120
