"""A real Celery worker, on the configured broker, runs a task whose effect lands in the database."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from monitor.models import WorkerHeartbeat
from monitor.tasks import record_heartbeat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
ROOT = Path(__file__).resolve().parent.parent


def database_url_for_subprocess() -> str:
    """The test database (not the dev one), in the form the settings parse."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker():
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "monitor.celery", "worker", "--pool=solo", "-Q", queue,
         "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=WARNING", "-n", f"{queue}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    yield queue
    process.terminate()
    try:
        output = process.communicate(timeout=20)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0].decode(errors="replace")
    if "Traceback" in output:
        print(output)


def test_a_real_worker_runs_a_task_and_writes_the_database(worker):
    name = f"probe-{uuid.uuid4().hex[:6]}"
    record_heartbeat.apply_async(args=[name], queue=worker)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if WorkerHeartbeat.objects.filter(name=name).exists():
            break
        time.sleep(0.5)
    heartbeat = WorkerHeartbeat.objects.get(name=name)
    assert heartbeat.hostname
    assert abs(time.time() - heartbeat.seen_at.timestamp()) < 120
