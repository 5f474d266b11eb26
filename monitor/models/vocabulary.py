"""The words the tables store, each defined once: client ids' length, alert sources, statuses and timeline events,
delivery statuses and events. Code compares against these members, never against string literals."""
from __future__ import annotations

from django.db import models

# Every column holding a client id, and ingestion's check of it, use this one length.
CLIENT_ID_MAX_LENGTH = 128


class AlertSource(models.TextChoices):
    AUDIT = "audit", "audit"
    DETECTOR = "detector", "detector"


class AlertStatus(models.TextChoices):
    OPEN = "open", "open"
    ACKNOWLEDGED = "acknowledged", "acknowledged"
    RESOLVED = "resolved", "resolved"
    MUTED = "muted", "muted"


UNRESOLVED = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.MUTED)


class AlertEventKind(models.TextChoices):
    """A line of an alert's timeline."""

    OPENED = "opened", "opened"
    REPEATED = "repeated", "repeated"
    ESCALATED = "escalated", "escalated"
    ACKNOWLEDGED = "acknowledged", "acknowledged"
    RESOLVED = "resolved", "resolved"
    MUTED = "muted", "muted"
    UNMUTED = "unmuted", "unmuted"
    REMINDER = "reminder", "reminder"
    SUPPRESSED = "suppressed", "suppressed"
    RESTRICTED = "restricted", "restricted"
    UNRESTRICTED = "unrestricted", "unrestricted"


class DeliveryEvent(models.TextChoices):
    """What a delivery tells a channel."""

    OPENED = "opened", "opened"
    ESCALATED = "escalated", "escalated"
    ACKNOWLEDGED = "acknowledged", "acknowledged"
    REMINDER = "reminder", "reminder"
    RESOLVED = "resolved", "resolved"
    SUMMARY = "summary", "summary"
    DIGEST = "digest", "digest"
    TEST = "test", "test"


class DeliveryStatus(models.TextChoices):
    """An outbox row's state: each change is one conditional UPDATE (monitor.alerts.outbox)."""

    PENDING = "pending", "pending"
    SENDING = "sending", "sending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"
    FOLDED = "folded", "folded into a summary"
