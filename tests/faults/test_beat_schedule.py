"""The recovery machinery is itself scheduled work: every task the beat sends must be sendable."""
from __future__ import annotations

import importlib

import pytest
from django.conf import settings

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("entry", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_every_scheduled_task_can_be_sent(entry: str):
    from monitor.celery import app

    name = settings.CELERY_BEAT_SCHEDULE[entry]["task"]
    importlib.import_module(name.rsplit(".", 1)[0])  # as the worker's autodiscovery does
    task = app.tasks[name]
    # Celery refuses to send a task whose soft limit exceeds its hard one (the project-wide soft limit applies to
    # tasks that set only a hard one): the beat would log an error on every tick and the task never run.
    if task.soft_time_limit and task.time_limit:
        assert task.soft_time_limit <= task.time_limit, (task.name, task.soft_time_limit, task.time_limit)
