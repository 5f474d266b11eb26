"""Alert lifecycle: open or update by fingerprint, acknowledge, resolve, mute; each change is an event,
an audit-log entry, and (where people must hear of it) an outbox row per matching channel.

The one writer of alerts: a detector incident's accounts and findings are attached here, and the model's automatic
gateway restriction fires from here when a detector alert opens, escalates or gains an account."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitor.alerts.timeline import record_event
from monitor.gateway.restrictions import auto_restrict
from monitor.models import (
    SEVERITY_RANK,
    Alert,
    AlertAccount,
    AlertEventKind,
    AlertSource,
    AlertStatus,
    Delivery,
    DeliveryEvent,
    DetectorFinding,
    NotificationChannel,
    RegisteredModel,
    Severity,
)
from monitor.platform.broker import publish_on_commit
from monitor.trail.models import TrailEntry


class AlertActionError(ValueError):
    """An action that does not apply to the alert in its current state."""


@dataclass(frozen=True)
class Signal:
    """What a detector or an audit reports; the fingerprint decides which alert it belongs to."""

    source: AlertSource
    kind: str  # detector or attack/policy name
    model: RegisteredModel
    severity: str
    title: str
    evidence: dict
    client_id: str = ""
    group: str = ""  # e.g. a linked-accounts group id, in place of one client
    incident: bool = False
    quiet_period: timedelta | None = None
    accounts: tuple[str, ...] = ()  # every client the alert is about (AlertAccount rows), the own one included
    finding_ids: tuple[int, ...] = ()  # the DetectorFinding rows this raise reports

    @property
    def fingerprint(self) -> str:
        subject = self.group or self.client_id or "model"
        return f"{self.source}:{self.model.slug}:{self.kind}:{subject}"[:200]


def _log(alert: Alert, kind: AlertEventKind, *, actor: Any = None, note: str = "", data: dict | None = None,
         before: dict | None = None, ip: str | None = None) -> None:
    record_event(alert, kind, actor=actor, note=note, data=data)
    TrailEntry.record(action=f"alert.{kind}", actor=actor, ip=ip, obj=alert, before=before,
                         after={**alert.snapshot(), "note": note} if note else alert.snapshot())


def raise_signal(signal: Signal, *, now: datetime | None = None) -> tuple[Alert, bool]:
    """Open an alert for a new fingerprint, or update the unresolved one. Returns (alert, created)."""
    now = now or timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                return _raise_once(signal, now)
        except IntegrityError:
            continue  # a concurrent scan opened the same fingerprint first: update that one instead
    raise RuntimeError(f"could not record alert {signal.fingerprint}")


def _raise_once(signal: Signal, now: datetime) -> tuple[Alert, bool]:
    alert = Alert.objects.select_for_update().unresolved().filter(fingerprint=signal.fingerprint).first()
    if alert is None:
        alert = Alert.objects.create(
            fingerprint=signal.fingerprint, source=signal.source, kind=signal.kind[:64], title=signal.title[:200],
            model=signal.model, client_id=signal.group or signal.client_id, incident=signal.incident,
            severity=signal.severity, first_seen=now, last_seen=now, evidence=signal.evidence,
            quiet_period=signal.quiet_period,
        )
        _log(alert, AlertEventKind.OPENED, data={"severity": alert.severity})
        notify(alert, DeliveryEvent.OPENED, now=now)
        _attach(alert, signal, changed=True, now=now)
        return alert, True
    before = alert.snapshot()
    rose = SEVERITY_RANK[signal.severity] > SEVERITY_RANK[alert.severity]
    alert.last_seen, alert.occurrences, alert.evidence = now, alert.occurrences + 1, signal.evidence
    alert.title = signal.title[:200] or alert.title
    if rose:
        alert.severity = signal.severity
    alert.save(update_fields=["last_seen", "occurrences", "evidence", "title", "severity"])
    if rose:
        _log(alert, AlertEventKind.ESCALATED, data={"from": before["severity"], "to": alert.severity}, before=before)
        notify(alert, DeliveryEvent.ESCALATED, key=alert.severity, now=now)
    _attach(alert, signal, changed=rose, now=now)
    return alert, False


def _attach(alert: Alert, signal: Signal, *, changed: bool, now: datetime) -> None:
    """The incident's accounts and findings; then the model's automatic restriction when the alert opened,
    escalated or gained an account (clients already restricted are left as they are)."""
    known = set(AlertAccount.objects.filter(alert=alert).values_list("client_id", flat=True))
    new = sorted(set(signal.accounts) - known)  # ingestion let no id past CLIENT_ID_MAX_LENGTH
    AlertAccount.objects.bulk_create([AlertAccount(alert=alert, client_id=client) for client in new],
                                     ignore_conflicts=True)
    if signal.finding_ids:
        DetectorFinding.objects.filter(pk__in=signal.finding_ids).update(alert=alert)
    if signal.source == AlertSource.DETECTOR and (changed or new):
        auto_restrict(signal.model, alert, now=now)


def notify(alert: Alert, event: DeliveryEvent, *, key: str = "", now: datetime | None = None) -> int:
    """Queue one delivery per matching channel, unless the alert is muted or covered by an incident."""
    if alert.status == AlertStatus.MUTED and event != DeliveryEvent.RESOLVED:
        return 0
    if alert.suppressed_by_incident():
        record_event(alert, AlertEventKind.SUPPRESSED, note=f"{event}: an open incident on the model covers it")
        return 0
    queued = 0
    for channel in NotificationChannel.objects.filter(enabled=True):
        if channel.wants(alert) and channel.wants_event(event):
            _, created = Delivery.objects.get_or_create(alert=alert, channel=channel, event=event, key=key)
            queued += created
    if queued:
        Alert.objects.filter(pk=alert.pk).update(last_notified_at=now or timezone.now())
        # Only a wake-up call: with the broker down the periodic delivery task finds the rows.
        publish_on_commit("monitor.tasks.deliver_notifications")
    return queued


def acknowledge(alert: Alert, *, user: Any, note: str = "", ip: str | None = None) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status not in (AlertStatus.OPEN, AlertStatus.MUTED):
            raise AlertActionError(f"the alert is {alert.status}; only open or muted alerts can be acknowledged")
        before = alert.snapshot()
        alert.status, alert.acknowledged_by, alert.acknowledged_at, alert.ack_note = AlertStatus.ACKNOWLEDGED, user, timezone.now(), note
        alert.muted_until, alert.mute_reason = None, ""
        alert.save()
        _log(alert, AlertEventKind.ACKNOWLEDGED, actor=user, note=note, before=before, ip=ip)
        notify(alert, DeliveryEvent.ACKNOWLEDGED)  # webhook and PagerDuty channels only (NotificationChannel.wants_event)
    return alert


def resolve(alert: Alert, *, user: Any = None, note: str = "", ip: str | None = None) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise AlertActionError("the alert is already resolved")
        before = alert.snapshot()
        alert.status, alert.resolved_by, alert.resolved_at = AlertStatus.RESOLVED, user, timezone.now()
        alert.save()
        _log(alert, AlertEventKind.RESOLVED, actor=user, note=note or ("" if user else "quiet period elapsed"), before=before, ip=ip)
        if before["status"] != AlertStatus.MUTED:
            notify(alert, DeliveryEvent.RESOLVED)
    return alert


def mute(alert: Alert, *, user: Any, until: datetime, reason: str, ip: str | None = None) -> Alert:
    if until <= timezone.now():
        raise AlertActionError("`until` must be in the future")
    if until > timezone.now() + timedelta(days=90):
        raise AlertActionError("a mute lasts at most 90 days")
    if not reason.strip():
        raise AlertActionError("a reason is required to mute an alert")
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise AlertActionError("a resolved alert cannot be muted")
        before = alert.snapshot()
        alert.status, alert.muted_until, alert.mute_reason = AlertStatus.MUTED, until, reason.strip()[:500]
        alert.save()
        _log(alert, AlertEventKind.MUTED, actor=user, note=reason, before=before, ip=ip)
    return alert


def housekeeping(*, now: datetime | None = None) -> dict[str, int]:
    """Lift expired mutes, resolve alerts quiet for their period, remind about open critical alerts."""
    now = now or timezone.now()
    counts = {"unmuted": 0, "auto_resolved": 0, "reminders": 0}
    for alert in Alert.objects.filter(status=AlertStatus.MUTED, muted_until__lte=now):
        with transaction.atomic():
            locked = Alert.objects.select_for_update().get(pk=alert.pk)
            if locked.status != AlertStatus.MUTED:
                continue
            before = locked.snapshot()
            locked.status = AlertStatus.ACKNOWLEDGED if locked.acknowledged_at else AlertStatus.OPEN
            locked.muted_until = None
            locked.save()
            _log(locked, AlertEventKind.UNMUTED, note="mute expired", before=before)
            counts["unmuted"] += 1
    for alert in Alert.objects.filter(status__in=(AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED), quiet_period__isnull=False):
        if alert.last_seen + alert.quiet_period <= now:
            resolve(alert)
            counts["auto_resolved"] += 1
    interval = timedelta(seconds=settings.ALERT_REMINDER_SECONDS)
    for alert in Alert.objects.filter(status=AlertStatus.OPEN, severity=Severity.CRITICAL):
        last = alert.last_notified_at or alert.first_seen
        if last + interval <= now:
            with transaction.atomic():
                number = alert.reminders_sent + 1
                Alert.objects.filter(pk=alert.pk).update(reminders_sent=number, last_notified_at=now)
                record_event(alert, AlertEventKind.REMINDER, note=f"reminder {number}: still open")
                notify(alert, DeliveryEvent.REMINDER, key=str(number), now=now)
                counts["reminders"] += 1
    return counts
