"""How many queries and clients a model has logged, fresh at read time without writing: the folded rollups plus
the tail of the log the fold has not reached yet, in one snapshot (one statement, which also checks the fold
watermark it counts past, so a fold running meanwhile is counted once). The API, /metrics, the pages and the
demo command read these, so they agree; a GET never folds. `unfolded_minutes` gives the pages' charts the same
tail, per client and minute."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute

from monitor.models import ClientDayRollup, ModelHourRollup, QueryLog, RegisteredModel, RollupWatermark

_TABLES = {"hours": ModelHourRollup._meta.db_table, "days": ClientDayRollup._meta.db_table,
           "log": QueryLog._meta.db_table, "mark": RollupWatermark._meta.db_table}
_FOLDED = f"COALESCE((SELECT folded_to_id FROM {_TABLES['mark']} WHERE model_id = %s), 0)"  # noqa: S608  # nosec B608
# Each statement takes the fold watermark read just before as a constant (`id > %s`: PostgreSQL then starts each
# partition's primary-key index at it; with the watermark as a subquery it planned for a third of the log and read
# all of it: 1.8 s for the model page at 50 M rows) and returns the watermark as of its own snapshot, which
# must be the same one (`_fresh`).
QUERIES_SQL = (f"SELECT COALESCE((SELECT SUM(count) FROM {_TABLES['hours']} WHERE model_id = %s), 0) + "  # noqa: S608  # nosec B608
               f"(SELECT COUNT(*) FROM {_TABLES['log']} WHERE model_id = %s AND id > %s), {_FOLDED}")
# The clients of the rollups, then those of the tail the rollups do not hold yet: the same count as a UNION of the
# two, which sorted every client-day row (150,000 at 5,000 clients and 30 days: 117-130 ms against 30-35 ms).
CLIENTS_SQL = (f"SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT client_id FROM {_TABLES['days']} "  # noqa: S608  # nosec B608
               f"WHERE model_id = %s) AS folded) + (SELECT COUNT(DISTINCT t.client_id) FROM {_TABLES['log']} AS t "
               f"WHERE t.model_id = %s AND t.id > %s AND NOT EXISTS (SELECT 1 FROM {_TABLES['days']} AS r "
               f"WHERE r.model_id = t.model_id AND r.client_id = t.client_id)), {_FOLDED}")
CLIENT_QUERIES_SQL = (f"SELECT COALESCE((SELECT SUM(count) FROM {_TABLES['days']} "  # noqa: S608  # nosec B608
                      f"WHERE model_id = %s AND client_id = %s), 0) + (SELECT COUNT(*) FROM {_TABLES['log']} "
                      f"WHERE model_id = %s AND client_id = %s AND id > %s), {_FOLDED}")
ATTEMPTS = 5


def _fresh(model: RegisteredModel, sql: str, params: list[Any]) -> int:
    """Rollups plus the log past the watermark `params` are completed with, counted in one snapshot: the statement
    also reads the watermark in its own snapshot, and a fold that moved it since it was read means another try."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_FOLDED}", [model.pk])  # noqa: S608  # nosec B608
        mark = int(cursor.fetchone()[0])
        for _ in range(ATTEMPTS):
            cursor.execute(sql, [*params, mark, model.pk])
            value, seen = cursor.fetchone()
            if int(seen) == mark:
                return int(value)
            mark = int(seen)
    raise RuntimeError(f"the rollup fold of {model.slug} moved during {ATTEMPTS} counts in a row")


def queries_logged(model: RegisteredModel) -> int:
    return _fresh(model, QUERIES_SQL, [model.pk, model.pk])


def client_count(model: RegisteredModel) -> int:
    return _fresh(model, CLIENTS_SQL, [model.pk, model.pk])


def client_queries(model: RegisteredModel, client_id: str) -> int:
    """Every query the client has sent the model."""
    return _fresh(model, CLIENT_QUERIES_SQL, [model.pk, client_id, model.pk, client_id])


@dataclass(frozen=True)
class TailMinute:
    """The queries one client sent in one minute that the rollups do not hold yet."""

    client_id: str
    minute: datetime
    count: int
    confidence_sum: float


def unfolded_minutes(model: RegisteredModel, *, since: datetime, client_id: str | None = None,
                     search: str = "") -> list[TailMinute]:
    """The log past the fold watermark (at most one fold interval of traffic while beat runs), since `since`."""
    folded = RollupWatermark.objects.filter(model=model).values_list("folded_to_id", flat=True).first() or 0
    tail = QueryLog.objects.filter(model=model, id__gt=folded, ts__gte=since)
    if client_id is not None:
        tail = tail.filter(client_id=client_id)
    if search:
        tail = tail.filter(client_id__icontains=search)
    rows = (tail.annotate(minute=TruncMinute("ts")).values("client_id", "minute")
            .annotate(n=Count("id"), confidence=Sum("confidence")).order_by("client_id", "minute"))
    return [TailMinute(row["client_id"], row["minute"], row["n"], row["confidence"] or 0.0) for row in rows]
