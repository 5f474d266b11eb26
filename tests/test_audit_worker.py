"""Audits on real workers: one killed mid-run leaves a run that is retried and completes."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audits.models import AuditRun
from audits.scheduling import policy_for, reap_stuck_runs, request_audit
from tests.factories import make_audited_model
from tests.workers import Worker, own_queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_audit_is_recovered_and_the_run_completes():
    model = make_audited_model(n=1500)
    policy = policy_for(model)
    policy.n_reference, policy.attacks = 16, ["threshold", "rmia", "lira_offline", "lira_online"]
    policy.save()
    with own_queue() as queue:
        first = Worker(queue)
        try:
            run = request_audit(model)
            wait_for(lambda: AuditRun.objects.filter(pk=run.pk, status="running", progress__gte=5).exists(),
                     timeout=120, what="the audit to start on the first worker")
            first.kill()
        finally:
            first.stop()
        killed_at = AuditRun.objects.get(pk=run.pk)
        assert killed_at.status == "running" and killed_at.progress < 100 and killed_at.attempts == 1
        # The reaper (a beat task) sees no heartbeat for AUDIT_STALE_SECONDS and hands the run back.
        later = timezone.now() + timedelta(seconds=settings.AUDIT_STALE_SECONDS + 1)
        assert reap_stuck_runs(now=later)["requeued"] >= 1
        second = Worker(queue)
        try:
            finished = wait_for(lambda: AuditRun.objects.filter(pk=run.pk, status__in=("done", "failed")).first(),
                                timeout=240, what="the audit to finish on the second worker")
        finally:
            output = second.stop()
    assert finished.status == "done", (finished.error, output[-2000:])
    assert finished.attempts == 2 and finished.progress == 100
    assert finished.result["headline"]["tpr_at_fpr"]["0.01"]["value"] > 0.05
