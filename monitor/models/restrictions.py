"""Restrictions on one client of one model, applied by the predict gateway: outputs reduced, throttled, blocked."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitor.models.registry import RegisteredModel
from monitor.models.vocabulary import CLIENT_ID_MAX_LENGTH


class ClientRestrictionQuerySet(models.QuerySet["ClientRestriction"]):
    def active(self, now: datetime | None = None) -> ClientRestrictionQuerySet:
        """Not lifted and not past its `until` (an expired one stops applying at once; beat then records it)."""
        now = now or timezone.now()
        return self.filter(Q(until__isnull=True) | Q(until__gt=now), lifted_at__isnull=True)


class ClientRestriction(models.Model):
    """What the gateway does to one client's queries until `until` (None: until lifted).

    `action` is label_only, round:K (outputs reduced as the output policies do), throttle (429 past
    RESTRICTED_QUERIES_PER_MINUTE) or block (403). At most one unlifted restriction per (model, client).
    """

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="restrictions")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    action = models.CharField(max_length=32)
    until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    lift_reason = models.CharField(max_length=200, blank=True, help_text="lifted, expired, or replaced")

    objects = ClientRestrictionQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["model", "client_id"], name="restriction_model_client")]
        constraints = [models.UniqueConstraint(fields=["model", "client_id"], condition=Q(lifted_at__isnull=True),
                                               name="restriction_one_unlifted")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} on {self.client_id} ({self.model_id})"


class RestrictionUsage(models.Model):
    """Queries a throttled client sent per one-minute window (the gateway's allowance is counted here)."""

    restriction = models.ForeignKey(ClientRestriction, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    queries = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["restriction", "window_start"], name="restrictionusage_window")]


class ClientUsage(models.Model):
    """Queries one client sent one model at the predict gateway per window (a minute or a UTC day), counted against
    the model's per-client throttle (`RegisteredModel.client_queries_per_minute` / `_per_day`)."""

    MINUTE, DAY = "minute", "day"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    span = models.CharField(max_length=8, choices=[(MINUTE, MINUTE), (DAY, DAY)])
    window_start = models.DateTimeField()
    queries = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "client_id", "span", "window_start"],
                                               name="clientusage_window")]
        indexes = [models.Index(fields=["window_start"], name="clientusage_window_start")]
