"""Which audits run when: due slots from each policy's cadence, claims by conditional UPDATE,
and runs whose worker died handed back or failed with a reason."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audits.models import MAX_ATTEMPTS, AuditPolicy, AuditRun, RunStatus
from monitor.platform.broker import publish
from monitor.trail.models import TrailEntry

# The step of a queued run whose message could not be sent: the reaper sends it again on its next tick.
WAITING_FOR_BROKER = "waiting for the task broker (unreachable); the run starts once it is back"


def slot_for(now: datetime, cadence_hours: int) -> datetime:
    """The start of the cadence window that contains `now` (windows aligned to the Unix epoch)."""
    period = cadence_hours * 3600
    return datetime.fromtimestamp(int(now.timestamp()) // period * period, tz=now.tzinfo)


def request_audit(model, *, user=None, trigger: str = "manual", slot: datetime | None = None,
                  enqueue: bool = True, remediation: bool | None = None) -> AuditRun | None:
    """Create a queued run and (unless the caller runs it itself) enqueue it after commit;
    None when this slot already has its run. A broker outage does not fail the request: see send_run.
    `remediation` also trains and attacks hardened candidates (None: as the model's audit policy says)."""
    policy = AuditPolicy.objects.for_model(model)
    remediation = policy.remediation if remediation is None else remediation
    try:
        with transaction.atomic():
            run = AuditRun.objects.create(model=model, trigger=trigger, slot=slot, requested_by=user,
                                          model_version=model.version, config=policy.config(), remediation=remediation)
            TrailEntry.record(action="audit.requested", actor=user, obj=run,
                                 after={"model": model.slug, "trigger": trigger, "slot": slot, "remediation": remediation})
    except IntegrityError:
        return None
    if enqueue:
        transaction.on_commit(lambda: send_run(run.pk))
    return run


def send_run(run_id: int) -> bool:
    """Send a queued run to the workers. With the broker unreachable the run stays queued, says so, and the
    reaper (reap_stuck_runs) sends it again; a worker's conditional claim makes a second message harmless."""
    if publish("audits.tasks.run_audit", run_id):
        AuditRun.objects.filter(id=run_id, status=RunStatus.QUEUED, step=WAITING_FOR_BROKER).update(step="")
        return True
    AuditRun.objects.filter(id=run_id, status=RunStatus.QUEUED).update(step=WAITING_FOR_BROKER)
    return False


def enqueue_due_audits(*, now: datetime | None = None) -> list[AuditRun]:
    """One run per model per cadence slot; safe to call from any number of beat ticks."""
    now = now or timezone.now()
    created = []
    from monitor.models import RegisteredModel

    for model in RegisteredModel.objects.all():
        policy = AuditPolicy.objects.for_model(model)
        if not policy.enabled:
            continue
        run = request_audit(policy.model, trigger="schedule", slot=slot_for(now, policy.cadence_hours))
        if run is not None:
            created.append(run)
    return created


def reap_stuck_runs(*, now: datetime | None = None) -> dict[str, int]:
    """Runs silent past AUDIT_STALE_SECONDS: queue again while attempts remain, else fail with the reason."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.AUDIT_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0}
    requeued: list[int] = []
    for run in AuditRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale):
        if run.attempts < MAX_ATTEMPTS:
            if AuditRun.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at__lt=stale).update(
                    status=RunStatus.QUEUED, step=f"requeued: no heartbeat since {run.heartbeat_at:%H:%M:%S} (worker lost)"):
                transaction.on_commit(lambda run_id=run.id: send_run(run_id))
                requeued.append(run.id)
                counts["requeued"] += 1
        elif AuditRun.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at__lt=stale).update(
                status=RunStatus.FAILED, finished_at=now,
                error=f"the worker stopped responding {run.attempts} times (last heartbeat {run.heartbeat_at:%Y-%m-%d %H:%M:%S}); "
                      "likely killed or out of memory"):
            counts["failed"] += 1
    # A queued run whose message was lost (e.g. broker restarted without persistence) or never sent (broker
    # unreachable when it was requested) is sent again.
    lost = Q(created_at__lt=stale) | Q(step=WAITING_FOR_BROKER)
    for run in AuditRun.objects.filter(lost, status=RunStatus.QUEUED).exclude(id__in=requeued):
        transaction.on_commit(lambda run_id=run.id: send_run(run_id))
        counts["requeued"] += 1
    return counts
