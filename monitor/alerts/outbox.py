"""The outbox worker: claim due deliveries by conditional UPDATE, send, record the outcome.

A row is claimed (pending → sending) by exactly one worker. A temporary failure puts it back with
exponential backoff for up to DELIVERY_RETRY_SECONDS; a permanent one fails it and, for a dead
destination, disables the channel. Past a channel's hourly limit, messages are folded into one summary.

Guarantee: one row per (alert, channel, event), sent by one worker at a time, so each message is sent once
whenever a send ends with an answer (sent, or an error that Slack/SMTP did not act on). It is at-least-once
when the outcome is lost: a worker killed after the request left, or a receiver answering after NOTIFY_TIMEOUT,
may have delivered it, and the row is sent again (after DELIVERY_STUCK_SECONDS, resp. the backoff). Every
attempt at a row carries the same idempotency key (notify.idempotency_key) for receivers that deduplicate.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from monitor.alerts import integrations, transports
from monitor.alerts.transports import NotifyError, render
from monitor.models import Alert, AlertStatus, Delivery, DeliveryEvent, DeliveryStatus, NotificationChannel

TRANSPORTS = {**transports.TRANSPORTS, **integrations.TRANSPORTS}
UNLIMITED_EVENTS = (DeliveryEvent.SUMMARY, DeliveryEvent.DIGEST, DeliveryEvent.TEST)
TAKEN = "taken"  # deliver_one's outcome when another worker claimed the row first


def deliver_due(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    now = now or timezone.now()
    # A worker killed between claim and outcome leaves "sending": hand it back after a while. If it died with the
    # request in flight the receiver may already have the message; the resend carries the same idempotency key.
    stuck_after = timedelta(seconds=settings.DELIVERY_STUCK_SECONDS)
    Delivery.objects.release_stuck(before=now - stuck_after)
    due = list(Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, channel__enabled=True)
               .order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit])
    outcomes: dict[str, int] = {}
    for delivery_id in due:
        # Claimed at the time of the claim, not of the batch's start: a live worker deep in a long batch (each
        # send may take NOTIFY_TIMEOUT) must not look stuck to another one.
        outcome = deliver_one(delivery_id, now=max(now, timezone.now()))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def deliver_one(delivery_id: int, *, now: datetime | None = None) -> str:
    """Claim and send one row; returns its new DeliveryStatus, or TAKEN."""
    now = now or timezone.now()
    if not Delivery.objects.claim(delivery_id, now=now):
        return TAKEN
    delivery = Delivery.objects.select_related("channel", "alert", "alert__model").get(id=delivery_id)
    channel = delivery.channel
    if not channel.enabled:
        _finish(delivery, status=DeliveryStatus.FAILED, error=f"channel disabled: {channel.disabled_reason}")
        return DeliveryStatus.FAILED
    # An acknowledge or resolve folded into a summary would leave the PagerDuty incident / the receiver's state open.
    closes = channel.kind in NotificationChannel.LIFECYCLE_KINDS and delivery.event in (DeliveryEvent.ACKNOWLEDGED, DeliveryEvent.RESOLVED)
    if delivery.event not in UNLIMITED_EVENTS and not closes and _over_rate_limit(channel, now):
        _fold(delivery, now)
        return DeliveryStatus.FOLDED
    if delivery.event == DeliveryEvent.SUMMARY:
        delivery.payload = _summary_payload(delivery)
        if not delivery.payload["items"]:
            _finish(delivery, status=DeliveryStatus.SENT, error="nothing to summarise")
            return DeliveryStatus.SENT
        Delivery.objects.filter(id=delivery.id).update(payload=delivery.payload)
    try:
        TRANSPORTS[channel.kind].send(channel, render(delivery))
    except NotifyError as exc:
        return _failed(delivery, exc, now)
    _finish(delivery, status=DeliveryStatus.SENT, sent_at=now)
    return DeliveryStatus.SENT


def _finish(delivery: Delivery, *, status: str, error: str = "", sent_at: datetime | None = None) -> None:
    Delivery.objects.filter(id=delivery.id).update(status=status, last_error=error, sent_at=sent_at)


def _failed(delivery: Delivery, exc: NotifyError, now: datetime) -> str:
    channel = delivery.channel
    NotificationChannel.objects.filter(pk=channel.pk).update(last_error=exc.message, last_error_at=now)
    if exc.permanent:
        _finish(delivery, status=DeliveryStatus.FAILED, error=exc.message)
        if exc.disables_channel:
            channel.disable(exc.message)
            from monitor.trail.models import TrailEntry

            TrailEntry.record(action="channel.disabled", obj=channel, after={"reason": exc.message})
        return DeliveryStatus.FAILED
    if now - delivery.created_at >= timedelta(seconds=settings.DELIVERY_RETRY_SECONDS):
        _finish(delivery, status=DeliveryStatus.FAILED, error=f"gave up after {delivery.attempts} attempts: {exc.message}")
        return DeliveryStatus.FAILED
    Delivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.PENDING, last_error=exc.message,
                                                   next_attempt_at=delivery.backoff(now))
    return "retry"


def _over_rate_limit(channel: NotificationChannel, now: datetime) -> bool:
    sent = Delivery.objects.filter(channel=channel, status=DeliveryStatus.SENT, sent_at__gte=now - timedelta(hours=1)).count()
    return sent >= channel.rate_limit_per_hour


def _fold(delivery: Delivery, now: datetime) -> None:
    window = now.replace(minute=0, second=0, microsecond=0)
    Delivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.FOLDED, last_error="rate limit: folded into the hourly summary")
    Delivery.objects.get_or_create(channel=delivery.channel, alert=None, event=DeliveryEvent.SUMMARY, key=window.isoformat(),
                                   defaults={"next_attempt_at": window + timedelta(hours=1)})


def _summary_payload(summary: Delivery) -> dict:
    start = datetime.fromisoformat(summary.key)
    folded = (Delivery.objects.filter(channel=summary.channel, status=DeliveryStatus.FOLDED, claimed_at__gte=start,
                                      claimed_at__lt=start + timedelta(hours=1))
              .select_related("alert", "alert__model").order_by("id"))
    items = [{"alert": d.alert_id, "event": d.event, "severity": d.alert.severity, "title": d.alert.title or d.alert.kind,
              "model": d.alert.model.slug, "client": d.alert.client_id} for d in folded if d.alert is not None]
    return {"count": len(items), "items": items[:200]}


def queue_digests(*, now: datetime | None = None) -> int:
    """One digest per enabled email channel per day: new and still-open alerts of its models."""
    now = now or timezone.now()
    queued = 0
    for channel in NotificationChannel.objects.filter(enabled=True, digest=True, kind=NotificationChannel.EMAIL):
        alerts = Alert.objects.filter(Q(first_seen__gte=now - timedelta(hours=24)) | Q(status__in=(AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)))
        if not channel.all_models:
            alerts = alerts.filter(model__in=channel.selected_models.all())
        alerts = list(alerts.select_related("model").by_severity("-last_seen")[:200])
        payload = {
            "date": now.date().isoformat(),
            "new_count": sum(a.first_seen >= now - timedelta(hours=24) for a in alerts),
            "open_count": sum(a.status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED) for a in alerts),
            "items": [{"alert": a.pk, "severity": a.severity, "status": a.status, "title": a.title or a.kind,
                       "model": a.model.slug, "client": a.client_id, "occurrences": a.occurrences} for a in alerts],
        }
        _, created = Delivery.objects.get_or_create(channel=channel, alert=None, event=DeliveryEvent.DIGEST, key=payload["date"],
                                                    defaults={"payload": payload})
        queued += created
    return queued


def send_test(channel: NotificationChannel) -> Delivery:
    """Send a test message now and return its delivery row (status sent, or failed with the reason)."""
    delivery = Delivery.objects.create(channel=channel, alert=None, event=DeliveryEvent.TEST, key=timezone.now().isoformat())
    if not channel.enabled:
        _finish(delivery, status=DeliveryStatus.FAILED, error=f"the channel is disabled: {channel.disabled_reason}")
    else:
        deliver_one(delivery.id)
    delivery.refresh_from_db()
    return delivery
