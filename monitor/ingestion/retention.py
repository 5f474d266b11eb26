"""Retention of the raw query log: each model keeps `retention_days` of raw queries.

On PostgreSQL a model's day partitions that lie wholly before the cutoff are detached and dropped; the few rows
of expired days still in the DEFAULT partition are deleted. On SQLite expired rows are deleted. The client-day
and model-hour rollups, findings, alerts and audit runs stay, so dashboards keep their history. The client-minute
rollup is as large as the log itself when clients send a query a minute or less, so it expires too, but never
within MINUTE_ROLLUP_MIN_DAYS (the client page's longest period).

Nothing the scanner has not read yet is dropped: a day holding a query past the model's scan watermark waits
(the plan says so) until a later run. Every drop is recorded in the security trail.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from monitor.ingestion import partitions
from monitor.ingestion.rollups import fold_rollups
from monitor.models import DetectorState, QueryLog, QueryRollup, RegisteredModel, RollupWatermark
from monitor.trail.models import TrailEntry


@dataclass
class Expired:
    """One expired day partition of one model, or (`partition` None) its expired rows outside any day partition,
    which are deleted from `table`."""

    day: date | None
    rows: int
    partition: partitions.Partition | None = None
    waiting: str = ""  # why it is kept for now ("" = dropped, or to be dropped)
    table: str = ""


@dataclass
class RetentionPlan:
    model: str
    retention_days: int
    cutoff: datetime
    watermark: int
    expired: list[Expired] = field(default_factory=list)
    dropped: bool = False
    minute_rollup_cutoff: datetime | None = None
    minute_rollups: int = 0

    @property
    def rows_dropped(self) -> int:
        return sum(e.rows for e in self.expired if not e.waiting)

    def lines(self) -> list[str]:
        verb = "dropped" if self.dropped else "would drop"
        head = (f"{self.model}: keeps {self.retention_days} days of raw queries (before "
                f"{self.cutoff:%Y-%m-%d %H:%M} UTC expire); scanned up to query #{self.watermark}")
        rollups = (f"  {verb}: {self.minute_rollups:,} client-minute rollup rows before "
                   f"{self.minute_rollup_cutoff:%Y-%m-%d} (day and hour rollups stay)") if self.minute_rollups else ""
        if not self.expired:
            return [head, "  nothing has expired", *([rollups] if rollups else [])]
        lines = [head, *([rollups] if rollups else [])]
        for item in self.expired:
            what = f"partition {item.partition.name} ({item.day})" if item.partition else (
                f"{item.day} outside any day partition" if item.day else "expired rows")
            if item.waiting:
                lines.append(f"  waiting: {what}, {item.rows:,} rows: {item.waiting}")
            else:
                lines.append(f"  {verb}: {what}, {item.rows:,} rows")
        lines.append(f"  {verb} {self.rows_dropped:,} rows in all")
        return lines


MINUTE_ROLLUP_MIN_DAYS = 30


def cutoff_for(model: RegisteredModel, now: datetime) -> datetime:
    """Queries with ts before this have expired: whole UTC days older than retention_days."""
    day = (now.astimezone(UTC) - timedelta(days=model.retention_days)).date()
    return datetime.combine(day, time.min, UTC)


def _watermark(model: RegisteredModel, *, folds_first: bool) -> int:
    """Up to where the scanner has read the log and the rollups count it (`folds_first`: a run folds the rollups
    up to the ingestion high-water mark before it drops anything, so only the scanner can hold it back)."""
    scanned = DetectorState.objects.filter(model=model).values_list("watermark_id", flat=True).first() or 0
    if folds_first:
        return scanned
    folded = RollupWatermark.objects.filter(model=model).values_list("folded_to_id", flat=True).first() or 0
    return min(scanned, folded)


def _one(sql: str, params: list) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def plan(model: RegisteredModel, *, now: datetime | None = None, folds_first: bool = True) -> RetentionPlan:
    """What enforcing retention on `model` now would drop, and what must wait for the scanner."""
    now = now or timezone.now()
    cutoff = cutoff_for(model, now)
    result = RetentionPlan(model=model.slug, retention_days=model.retention_days, cutoff=cutoff,
                           watermark=_watermark(model, folds_first=folds_first))
    result.minute_rollup_cutoff = min(cutoff, datetime.combine(
        (now.astimezone(UTC) - timedelta(days=MINUTE_ROLLUP_MIN_DAYS)).date(), time.min, UTC))
    result.minute_rollups = QueryRollup.objects.filter(model=model, minute__lt=result.minute_rollup_cutoff).count()
    unscanned = f"the scanner has not read it yet (watermark #{result.watermark}); it waits for the next run"
    if partitions.partitioned():
        for part in partitions.partitions(model.pk):
            if part.end > cutoff:
                continue
            count, highest = _one(f"SELECT count(*), COALESCE(max(id), 0) FROM {part.name}", [])  # noqa: S608  # nosec B608
            result.expired.append(Expired(part.day, int(count), part, unscanned if highest > result.watermark else ""))
        table = partitions.DEFAULT
    else:
        table = QueryLog._meta.db_table
    count, highest = _one(f"SELECT count(*), COALESCE(max(id), 0) FROM {table} WHERE model_id = %s AND ts < %s",  # noqa: S608  # nosec B608
                          [model.pk, cutoff])
    if count:
        result.expired.append(Expired(None, int(count), None, unscanned if highest > result.watermark else "", table))
    return result


def enforce(model: RegisteredModel, *, dry_run: bool = False, now: datetime | None = None,
            actor: object = None) -> RetentionPlan:
    """Drop what has expired, the scanner has read and the rollups count; record each drop in the security trail."""
    if not dry_run:
        fold_rollups(model)
    result = plan(model, now=now, folds_first=dry_run)
    if dry_run:
        return result
    for item in result.expired:
        if item.waiting:
            continue
        with transaction.atomic():
            if item.partition is not None:
                partitions.drop_partition(item.partition)
            else:
                with connection.cursor() as cursor:
                    cursor.execute(f"DELETE FROM {item.table} WHERE model_id = %s AND ts < %s AND id <= %s",  # noqa: S608  # nosec B608
                                   [model.pk, result.cutoff, result.watermark])
                    item.rows = cursor.rowcount
            TrailEntry.record(action="queries.expired", actor=actor, actor_name=None if actor else "retention",
                              obj=model, after={
                                  "model": model.slug, "retention_days": model.retention_days,
                                  "cutoff": result.cutoff.isoformat(), "day": item.day.isoformat() if item.day else None,
                                  "partition": item.partition.name if item.partition else None, "rows": item.rows})
    if result.minute_rollups:
        with transaction.atomic():
            deleted, _ = QueryRollup.objects.filter(model=model, minute__lt=result.minute_rollup_cutoff).delete()
            result.minute_rollups = deleted
            TrailEntry.record(action="rollups.expired", actor=actor, actor_name=None if actor else "retention",
                              obj=model, after={"model": model.slug, "table": "client-minute rollup",
                                                "cutoff": result.minute_rollup_cutoff.isoformat(), "rows": deleted})
    result.dropped = True
    return result


def enforce_all(*, model_slug: str | None = None, dry_run: bool = False, now: datetime | None = None) -> list[RetentionPlan]:
    models = RegisteredModel.objects.all()
    if model_slug is not None:
        models = models.filter(slug=model_slug)
    return [enforce(model, dry_run=dry_run, now=now) for model in models]


def maintain_partitions(*, now: datetime | None = None, ahead: int = 3) -> dict[str, int]:
    """Partitions for every model from yesterday to `ahead` days on, and DEFAULT's unexpired rows moved into
    partitions of their own (expired ones are left for retention to delete)."""
    now = now or timezone.now()
    models = list(RegisteredModel.objects.all())
    created = partitions.ensure_partitions([m.pk for m in models], today=now.astimezone(UTC).date(), ahead=ahead)
    adopted = partitions.adopt_default_rows(not_before={m.pk: cutoff_for(m, now).date() for m in models})
    return {"created": len(created), "adopted": len(adopted)}
