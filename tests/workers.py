"""Real Celery worker processes for tests, on the configured broker, on a queue of their own."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

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


class Worker:
    def __init__(self, queue: str, **env: str) -> None:
        self.queue = queue
        environment = {**os.environ, "DATABASE_URL": database_url_for_subprocess(),
                       "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "OMP_NUM_THREADS": "1", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "monitor.celery", "worker", "--pool=solo", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=WARNING", "-n", f"{queue}-{uuid.uuid4().hex[:4]}@%h"],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.communicate(timeout=20)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[0].decode(errors="replace")


@contextlib.contextmanager
def own_queue() -> Iterator[str]:
    """Send every task of this test to a queue no other worker (e.g. a running `make run`) listens on."""
    from monitor.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        app.conf.task_default_queue = previous
