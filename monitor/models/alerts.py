"""Alerts and their lifecycle, notification channels, and the delivery outbox."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models, transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from monitor.models.registry import RegisteredModel
from monitor.models.vocabulary import (
    CLIENT_ID_MAX_LENGTH,
    UNRESOLVED,
    AlertEventKind,
    AlertSource,
    AlertStatus,
    DeliveryEvent,
    DeliveryStatus,
)
from monitor.platform.crypto import data_fernet, open_text, seal_text
from monitor.platform.severity import RANK, SEVERITIES, SEVERITY_RANK, Severity

__all__ = ["SEVERITIES", "SEVERITY_RANK", "UNRESOLVED", "Alert", "AlertEvent", "AlertEventKind", "AlertSource",
           "AlertStatus", "Delivery", "DeliveryEvent", "DeliveryStatus", "NotificationChannel", "Severity"]


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


class AlertQuerySet(models.QuerySet):
    def unresolved(self) -> AlertQuerySet:
        return self.filter(status__in=UNRESOLVED)

    def matching(self, *, status: str = "", model: str = "", severity: str = "", client: str = "",
                 client_contains: str = "") -> AlertQuerySet:
        """The alert filter of the API and the alert list page. `status` is one of AlertStatus or "unresolved"
        ("" = any); `client` matches a client id exactly (automation), `client_contains` is the page's search box.
        Values are assumed valid: callers report a bad one to the user first."""
        alerts = self
        if status == "unresolved":
            alerts = alerts.unresolved()
        elif status:
            alerts = alerts.filter(status=status)
        if model:
            alerts = alerts.filter(model__slug=model)
        if severity:
            alerts = alerts.filter(severity=severity)
        if client:  # the alert's own client, or any account linked into the incident
            alerts = alerts.filter(Q(client_id=client) | Q(pk__in=AlertAccount.objects.filter(client_id=client)
                                                            .values("alert_id")))
        if client_contains:
            alerts = alerts.filter(client_id__icontains=client_contains)
        return alerts

    def by_severity(self, *then: str) -> AlertQuerySet:
        """Most severe first (by rank, not by the string), then by `then`."""
        rank = Case(*(When(severity=severity.value, then=Value(r)) for severity, r in RANK.items()),
                    default=Value(-1), output_field=IntegerField())
        return self.alias(severity_rank=rank).order_by("-severity_rank", *then)


class Alert(models.Model):
    """One alert per fingerprint (source + model + detector/attack + client or group); repeats update it."""

    fingerprint = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=AlertSource.choices)
    kind = models.CharField(max_length=64)
    title = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alerts")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, blank=True)
    # A model-level incident (e.g. a failed audit policy) silences the per-client alerts of its model.
    incident = models.BooleanField(default=False)
    severity = models.CharField(max_length=16, choices=Severity.choices())
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    occurrences = models.PositiveIntegerField(default=1)
    evidence = models.JSONField(default=dict)
    quiet_period = models.DurationField(null=True, blank=True, help_text="resolve automatically after this long without a repeat")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    muted_until = models.DateTimeField(null=True, blank=True)
    mute_reason = models.CharField(max_length=500, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveIntegerField(default=0)

    objects = AlertQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["model", "status"], name="alert_model_status"),
            models.Index(fields=["status", "severity"], name="alert_status_severity"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"], condition=~models.Q(status=AlertStatus.RESOLVED), name="alert_one_unresolved_per_fingerprint"
            )
        ]
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.severity} {self.title or self.kind} on {self.model.slug}" + (f" ({self.client_id})" if self.client_id else "")

    @property
    def is_unresolved(self) -> bool:
        return self.status in UNRESOLVED

    def summary(self) -> dict:
        """The alert shape of DESIGN.md (API, exports, evidence)."""
        return {
            "id": self.pk,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "kind": self.kind,
            "title": self.title,
            "model": self.model.slug,
            "client": self.client_id or None,
            "incident": self.incident,
            "severity": self.severity,
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "occurrences": self.occurrences,
            "evidence": self.evidence,
            "acknowledged_by": _username(self.acknowledged_by),
            "acknowledged_at": self.acknowledged_at,
            "ack_note": self.ack_note,
            "resolved_by": _username(self.resolved_by),
            "resolved_at": self.resolved_at,
            "muted_until": self.muted_until,
            "mute_reason": self.mute_reason,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"status": self.status, "severity": self.severity, "muted_until": self.muted_until,
                "mute_reason": self.mute_reason, "ack_note": self.ack_note}

    def suppressed_by_incident(self) -> bool:
        """An open model-level incident silences this model's per-client detail alerts, except critical
        ones: a standing audit breach must not hide an attack in progress."""
        if self.incident or not self.client_id or self.severity == Severity.CRITICAL:
            return False
        return Alert.objects.unresolved().filter(model_id=self.model_id, incident=True).exclude(status=AlertStatus.MUTED).exists()


class AlertAccount(models.Model):
    """A client (API account) an alert is about: the incident's own client and the accounts linked to it."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="accounts")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "client_id"], name="alertaccount_once")]
        indexes = [models.Index(fields=["client_id"], name="alertaccount_client")]


class AlertEvent(models.Model):
    """The alert's timeline: what happened, when, and who did it."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=AlertEventKind.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, default="system")
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]


class ChannelTargetField(models.TextField):
    """A channel's target, stored encrypted with the data key when it is a secret (NotificationChannel.SECRET_TARGETS:
    webhook URLs, PagerDuty routing keys) and in the clear otherwise (email addresses). The instance always holds
    the clear value, so every reader of `channel.target` is unchanged; the value is sealed as it is written
    (pre_save), and opened as it is read. A QuerySet.update() writes what it is given: pass it seal_text(...)."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = super().pre_save(model_instance, add)
        if value and getattr(model_instance, "kind", None) in NotificationChannel.SECRET_TARGETS:
            return seal_text(value)
        return value

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return open_text(value) if value is not None else None


class NotificationChannel(models.Model):
    EMAIL, SLACK, WEBHOOK, PAGERDUTY, TEAMS = "email", "slack", "webhook", "pagerduty", "teams"
    KINDS = [(EMAIL, "email"), (SLACK, "Slack incoming webhook"), (WEBHOOK, "signed webhook (Standard Webhooks)"),
             (PAGERDUTY, "PagerDuty Events API v2"), (TEAMS, "Microsoft Teams workflow webhook")]
    # Kinds whose target is a secret URL (shown masked); PagerDuty's routing key is a secret too.
    SECRET_TARGETS = (SLACK, WEBHOOK, PAGERDUTY, TEAMS)
    # Kinds that follow an alert's whole life: acknowledged goes to these only (a mailbox does not need it).
    LIFECYCLE_KINDS = (WEBHOOK, PAGERDUTY)

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=KINDS)
    # Encrypted at rest for the kinds in SECRET_TARGETS (ChannelTargetField).
    target = ChannelTargetField(help_text="email: comma-separated addresses; Slack, Teams, webhook: the URL; "
                                          "PagerDuty: the integration's routing key")
    # webhook: the whsec_ signing secret (Fernet-encrypted; shown once, when the channel is created)
    secret = models.BinaryField(blank=True, default=b"", editable=False)
    min_severity = models.CharField(max_length=16, choices=Severity.choices(), default=Severity.WARNING)
    all_models = models.BooleanField(default=True)
    selected_models = models.ManyToManyField(RegisteredModel, blank=True, related_name="channels",
                                             help_text="used when all_models is off")
    enabled = models.BooleanField(default=True)
    rate_limit_per_hour = models.PositiveIntegerField(default=30, help_text="messages beyond this are folded into one summary")
    digest = models.BooleanField(default=True, help_text="email channels: a daily digest of the last 24 hours")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def wants(self, alert: Alert) -> bool:
        if not self.enabled or SEVERITY_RANK[alert.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        return self.all_models or self.selected_models.filter(pk=alert.model_id).exists()

    def summary(self) -> dict:
        """The channel as the API shows it (the target masked)."""
        return {
            "id": self.pk,
            "name": self.name,
            "kind": self.kind,
            "target": self.masked_target(),
            "min_severity": self.min_severity,
            "models": None if self.all_models else sorted(self.selected_models.values_list("slug", flat=True)),
            "enabled": self.enabled,
            "rate_limit_per_hour": self.rate_limit_per_hour,
            "digest": self.digest,
            "last_error": self.last_error or None,
            "last_error_at": self.last_error_at,
            "disabled_reason": self.disabled_reason or None,
        }

    def masked_target(self) -> str:
        """What the API, the pages, the admin and the trail show of the target: a secret URL's scheme and host (where
        alerts go; the path is the key to post there), a routing key's first characters, email addresses whole."""
        if self.kind == self.PAGERDUTY:
            return self.target[:4] + "…" if len(self.target) > 4 else "…"
        if self.kind in self.SECRET_TARGETS:
            site = url_site(self.target)
            return f"{site}/…" if site else "…"
        return self.target

    def wants_event(self, event: str) -> bool:
        return event != DeliveryEvent.ACKNOWLEDGED or self.kind in self.LIFECYCLE_KINDS

    def signing_secret(self) -> str:
        return data_fernet().decrypt(bytes(self.secret)).decode() if self.secret else ""

    def set_signing_secret(self, secret: str) -> None:
        """Keep the webhook's whsec_ secret, encrypted (saved with the channel)."""
        self.secret = data_fernet().encrypt(secret.encode()) if secret else b""

    def disable(self, reason: str) -> None:
        now = timezone.now()
        with transaction.atomic():
            NotificationChannel.objects.filter(pk=self.pk).update(enabled=False, disabled_reason=reason, last_error=reason,
                                                                  last_error_at=now)
            Delivery.objects.filter(channel=self, status=DeliveryStatus.PENDING).update(status=DeliveryStatus.FAILED, last_error=f"channel disabled: {reason}")
        self.enabled, self.disabled_reason, self.last_error, self.last_error_at = False, reason, reason, now


def url_site(url: str) -> str:
    """scheme://host[:port] of a URL, without any user:password@ (never parsed as a port: a bad one must not raise)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if parts.scheme and host else ""


class DeliveryQuerySet(models.QuerySet):
    def claim(self, delivery_id: int, *, now: datetime) -> bool:
        """pending -> sending by one conditional UPDATE: True for the one worker that got the row."""
        return bool(self.filter(id=delivery_id, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1))

    def release_stuck(self, *, before: datetime) -> int:
        """Rows a worker claimed before `before` and never finished (it died) go back to pending."""
        return self.filter(status=DeliveryStatus.SENDING, claimed_at__lt=before).update(status=DeliveryStatus.PENDING)


class Delivery(models.Model):
    """The outbox: one row per (alert, channel, event, key); a worker claims it by conditional UPDATE."""

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=DeliveryEvent.choices)
    key = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(default=dict, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "event", "key"], condition=models.Q(alert__isnull=False),
                                    name="delivery_once_per_alert_event"),
            models.UniqueConstraint(fields=["channel", "event", "key"], condition=models.Q(alert__isnull=True),
                                    name="delivery_once_per_channel_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel} ({self.status})"

    def backoff(self, now: datetime) -> datetime:
        """DELIVERY_BACKOFF_SECONDS (30 s), then doubling (1 min, 2 min, …), capped at 1 h."""
        return now + timedelta(seconds=min(3600, settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, self.attempts - 1)))
