"""Fold the query log into the rollups the dashboards read: client × minute, client × day, model × hour.

Ingestion only writes the log; folding is one aggregate INSERT per rollup over the rows past the model's fold
watermark, run by beat (`fold_query_rollups`), by a page before it reads the rollups, and by retention before it
drops a partition, so no row is dropped uncounted. A fold reads up to the ingestion-safe high-water mark and
holds the watermark row locked, so concurrent folds count each row once.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from monitor.ingestion.store import safe_high_water
from monitor.models import (
    ClientDayRollup,
    ModelHourRollup,
    QueryLog,
    QueryRollup,
    RegisteredModel,
    RollupWatermark,
)

# The bucket of a row's ts, per rollup, in each dialect (PostgreSQL sessions run in UTC; SQLite stores UTC text
# in the same form Django writes these columns).
BUCKETS = {
    "postgresql": {"minute": "date_trunc('minute', ts)", "day": "(ts AT TIME ZONE 'UTC')::date",
                   "hour": "date_trunc('hour', ts)"},
    "sqlite": {"minute": "strftime('%%Y-%%m-%%d %%H:%%M:00', ts)", "day": "date(ts)",
               "hour": "strftime('%%Y-%%m-%%d %%H:00:00', ts)"},
}
ROLLUPS = ((QueryRollup, ("client_id", "minute")), (ClientDayRollup, ("client_id", "day")), (ModelHourRollup, ("hour",)))


@dataclass(frozen=True)
class Folded:
    model: str
    queries: int
    folded_to_id: int


def _fold_sql(rollup: type, keys: tuple[str, ...]) -> str:
    table, log = rollup._meta.db_table, QueryLog._meta.db_table
    bucket = BUCKETS["postgresql" if connection.vendor == "postgresql" else "sqlite"]
    selected = ", ".join(bucket.get(key, key) for key in keys)
    columns = ", ".join(keys)
    groups = ", ".join(str(i + 2) for i in range(len(keys)))
    return (f"INSERT INTO {table} (model_id, {columns}, count, confidence_sum) "  # noqa: S608  # nosec B608
            f"SELECT model_id, {selected}, count(*), sum(confidence) FROM {log} "
            f"WHERE model_id = %s AND id > %s AND id <= %s GROUP BY 1, {groups} ORDER BY 1, {groups} "
            f"ON CONFLICT (model_id, {columns}) DO UPDATE SET count = {table}.count + excluded.count, "
            f"confidence_sum = {table}.confidence_sum + excluded.confidence_sum")


def fold_rollups(model: RegisteredModel) -> Folded:
    """Count the model's rows logged since the last fold into the three rollups; returns how many."""
    high = safe_high_water(model)
    with transaction.atomic():
        mark, _ = RollupWatermark.objects.get_or_create(model=model)
        mark = RollupWatermark.objects.select_for_update().get(pk=mark.pk)  # one fold of a model at a time
        if mark.folded_to_id >= high:
            return Folded(model.slug, 0, mark.folded_to_id)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {QueryLog._meta.db_table} "  # noqa: S608  # nosec B608
                           "WHERE model_id = %s AND id > %s AND id <= %s", [model.pk, mark.folded_to_id, high])
            queries = int(cursor.fetchone()[0])
            if queries:
                for rollup, keys in ROLLUPS:
                    cursor.execute(_fold_sql(rollup, keys), [model.pk, mark.folded_to_id, high])
        RollupWatermark.objects.filter(pk=mark.pk).update(folded_to_id=high, folded_at=timezone.now())
    return Folded(model.slug, queries, high)


def fold_all() -> list[Folded]:
    return [fold_rollups(model) for model in RegisteredModel.objects.all()]
