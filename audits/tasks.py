"""Thin Celery tasks for audits."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audits import runner, scheduling


@shared_task(acks_late=True, time_limit=settings.AUDIT_TIME_LIMIT_SECONDS, soft_time_limit=settings.AUDIT_TIME_LIMIT_SECONDS - 60)
def run_audit(run_id: int) -> str | None:
    run = runner.execute(run_id)
    return run.status if run is not None else None


@shared_task(time_limit=120, soft_time_limit=100)
def schedule_audits() -> list[int]:
    return [run.pk for run in scheduling.enqueue_due_audits()]


@shared_task(time_limit=120, soft_time_limit=100)
def reap_stuck_audits() -> dict:
    return scheduling.reap_stuck_runs()
