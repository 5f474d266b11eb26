"""How many queries and clients a model has logged, fresh at read time without writing: the folded rollups plus
the tail of the log the fold has not reached yet, in one statement (one snapshot, so a fold running meanwhile
is counted once). The API, /metrics, the pages and the demo command read these, so they agree; a GET never
folds. `unfolded_minutes` gives the pages' charts the same tail, per client and minute."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute

from monitor.models import ClientDayRollup, ModelHourRollup, QueryLog, RegisteredModel, RollupWatermark

_TABLES = {"hours": ModelHourRollup._meta.db_table, "days": ClientDayRollup._meta.db_table,
           "log": QueryLog._meta.db_table, "mark": RollupWatermark._meta.db_table}
_FOLDED = f"COALESCE((SELECT folded_to_id FROM {_TABLES['mark']} WHERE model_id = %s), 0)"  # noqa: S608  # nosec B608
QUERIES_SQL = (f"SELECT COALESCE((SELECT SUM(count) FROM {_TABLES['hours']} WHERE model_id = %s), 0) + "  # noqa: S608  # nosec B608
               f"(SELECT COUNT(*) FROM {_TABLES['log']} WHERE model_id = %s AND id > {_FOLDED})")
CLIENTS_SQL = (f"SELECT COUNT(*) FROM (SELECT client_id FROM {_TABLES['days']} WHERE model_id = %s "  # noqa: S608  # nosec B608
               f"UNION SELECT client_id FROM {_TABLES['log']} WHERE model_id = %s AND id > {_FOLDED}) AS clients")

CLIENT_QUERIES_SQL = (f"SELECT COALESCE((SELECT SUM(count) FROM {_TABLES['days']} "  # noqa: S608  # nosec B608
                      f"WHERE model_id = %s AND client_id = %s), 0) + (SELECT COUNT(*) FROM {_TABLES['log']} "
                      f"WHERE model_id = %s AND client_id = %s AND id > {_FOLDED})")


def queries_logged(model: RegisteredModel) -> int:
    with connection.cursor() as cursor:
        cursor.execute(QUERIES_SQL, [model.pk, model.pk, model.pk])
        return int(cursor.fetchone()[0])


def client_count(model: RegisteredModel) -> int:
    with connection.cursor() as cursor:
        cursor.execute(CLIENTS_SQL, [model.pk, model.pk, model.pk])
        return int(cursor.fetchone()[0])


def client_queries(model: RegisteredModel, client_id: str) -> int:
    """Every query the client has sent the model."""
    with connection.cursor() as cursor:
        cursor.execute(CLIENT_QUERIES_SQL, [model.pk, client_id, model.pk, client_id, model.pk])
        return int(cursor.fetchone()[0])


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
