"""The query log, its per-minute rollup, and the worker heartbeat."""
from __future__ import annotations

from django.db import models

from monitor.models.registry import RegisteredModel
from monitor.models.vocabulary import CLIENT_ID_MAX_LENGTH


class QueryLog(models.Model):
    """One prediction query: features and outputs as little-endian float32 bytes."""

    # No foreign key in PostgreSQL (migration 0024): store_queries holds the model's row once per batch instead
    # (monitor.ingestion.store.hold_model). Deleting a model still deletes its queries (Django's CASCADE).
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, db_constraint=False,
                              related_name="queries")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    ts = models.DateTimeField()
    features = models.BinaryField()
    outputs = models.BinaryField()
    label = models.SmallIntegerField()
    confidence = models.FloatField()
    request_id = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["model", "ts"], name="query_model_ts"),
            models.Index(fields=["model", "client_id", "ts"], name="query_model_client_ts"),
        ]
        # On PostgreSQL the table is partitioned by (model, day) (migration 0007, monitor/ingestion/partitions.py):
        # the primary key there is (id, model_id, ts), which also serves reads by (model, id), and this
        # constraint is a unique index on each partition (PostgreSQL cannot enforce it across partitions).
        constraints = [
            models.UniqueConstraint(
                fields=["model", "request_id"], condition=models.Q(request_id__isnull=False), name="query_request_once"
            )
        ]


class QueryRollup(models.Model):
    """Per model, client and minute: what dashboards read instead of scanning the raw log."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, related_name="rollups")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    minute = models.DateTimeField()
    count = models.PositiveIntegerField()
    confidence_sum = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["model", "minute"], name="rollup_model_minute")]
        constraints = [
            models.UniqueConstraint(fields=["model", "client_id", "minute"], name="rollup_model_client_minute")
        ]


class WorkerHeartbeat(models.Model):
    """Written by a periodic task: proves a worker and beat are alive (shown on the overview)."""

    name = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)


class ClientDayRollup(models.Model):
    """Per model, client and day: what lists of clients read (thousands of clients, weeks of traffic)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, related_name="client_days")
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    day = models.DateField()
    count = models.PositiveIntegerField()
    confidence_sum = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["model", "day"], name="clientday_model_day")]
        constraints = [models.UniqueConstraint(fields=["model", "client_id", "day"], name="clientday_model_client_day")]


class ModelHourRollup(models.Model):
    """Per model and hour, all clients together: totals and volume charts without touching client rows."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, related_name="hours")
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField()
    confidence_sum = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "hour"], name="modelhour_model_hour")]


class RollupWatermark(models.Model):
    """How far a model's query log has been folded into the rollups (monitor.ingestion.rollups)."""

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="rollup_watermark")
    folded_to_id = models.BigIntegerField(default=0, help_text="highest query id counted in the rollups")
    folded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollups of {self.model_id} folded to #{self.folded_to_id}"
