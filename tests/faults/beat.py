"""The app's Celery beat schedule on short intervals, so fault tests see recovery in seconds, not minutes.

    celery -A tests.faults.beat beat

Same tasks and same code as production (monitor/settings.py CELERY_BEAT_SCHEDULE); only the intervals differ.
Audit scheduling, digests and pruning are left out: they would start work the tests did not ask for.
"""
from __future__ import annotations

from monitor.celery import app

INTERVALS = {
    "worker-heartbeat": 5.0,
    "deliver-notifications": 2.0,
    "scan-queries": 3.0,
    "reap-stuck-audits": 2.0,
}

app.conf.beat_schedule = {name: {**entry, "schedule": INTERVALS[name]}
                          for name, entry in app.conf.beat_schedule.items() if name in INTERVALS}
