"""Thin Celery tasks for audits."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audits import candidates, runner, scheduling
from monitor.trail import signing


@shared_task(acks_late=True, time_limit=settings.AUDIT_TIME_LIMIT_SECONDS, soft_time_limit=settings.AUDIT_TIME_LIMIT_SECONDS - 60)
def run_audit(run_id: int) -> str | None:
    run = runner.execute(run_id)
    return run.status if run is not None else None


@shared_task(time_limit=120, soft_time_limit=100)
def schedule_audits() -> list[int]:
    return [run.pk for run in scheduling.enqueue_due_audits()]


@shared_task(acks_late=True, time_limit=settings.AUDIT_TIME_LIMIT_SECONDS, soft_time_limit=settings.AUDIT_TIME_LIMIT_SECONDS - 60)
def gate_candidate(candidate_id: int) -> str | None:
    """A privacy-gate candidate audited beside production (audits.candidates.execute)."""
    candidate = candidates.execute(candidate_id)
    return candidate.verdict or candidate.status if candidate is not None else None


@shared_task(time_limit=120, soft_time_limit=100)
def reap_stuck_audits() -> dict:
    return {**scheduling.reap_stuck_runs(), "candidates": candidates.reap()}


@shared_task(time_limit=300, soft_time_limit=240)
def sign_trail_head() -> int | None:
    """Hourly: the security trail's head signed with the evidence key, when it moved (monitor.trail.signing)."""
    signed = signing.sign_trail_head()
    return signed.seq if signed is not None else None
