"""Sending a task from code that must not fail or hang because the broker is down (web requests above all).

Every message sent from a request is only a wake-up call: the work itself is already in the database (a queued
audit run, a pending outbox row), and a periodic task finds it there when the message is lost (the audit reaper,
the outbox worker). So when Redis is unreachable the request gives the publish a short, bounded retry, logs,
and answers anyway; the work starts once the broker is back.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

log = logging.getLogger(__name__)
# About one second in all before giving up, instead of Celery's default policy for each caller to tune.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 0.5}


def publish(task: str, *args: object) -> bool:
    """Send the task named `task` (e.g. "audits.tasks.run_audit") with `args`; False (logged) when the broker
    cannot be reached. By name, so domain code never imports a task module (which imports it back)."""
    try:
        current_app.send_task(task, args, retry=True, retry_policy=RETRY_POLICY)
    except (BrokerUnavailable, OSError) as exc:
        log.warning("broker unreachable, %s%r not sent (the database keeps the work): %s", task, args, exc)
        return False
    return True


def publish_on_commit(task: str, *args: object, on_failure: Callable[[], object] | None = None) -> None:
    """`publish` once the current transaction commits (at once outside one); `on_failure` if it could not."""

    def send() -> None:
        if not publish(task, *args) and on_failure is not None:
            on_failure()

    transaction.on_commit(send)
