"""Statistics for the query log's partitions on a server whose autovacuum is off or behind (this machine's is off):
without them, counting a model's unfolded queries read every row of the model through the (model_id, ts) index
(the model page took 1.2 s on 6 M rows); the task analyses each partition that holds rows and has none yet."""
from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitor.ingestion import partitions, retention
from monitor.models import QueryLog
from monitor.tasks import analyze_query_partitions
from tests.factories import ingest_token, make_model, query

pytestmark = pytest.mark.django_db
NOW = timezone.now()
COPIES = 40_000


def with_statistics() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_stats WHERE schemaname = 'public' AND attname = 'model_id' "
                       "AND tablename LIKE %s", [f"{partitions.PARENT}_%"])
        return {row[0] for row in cursor.fetchall()}


def tail_plan(model, watermark: int, partition: str) -> str:
    """The plan of the tail count (monitor.ingestion.counts) for one partition: its scan node and what is under it."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN SELECT COUNT(*) FROM {partitions.PARENT} WHERE model_id = %s AND id > %s",  # noqa: S608
                       [model.pk, watermark])
        lines = [row[0] for row in cursor.fetchall()]
    start = next(i for i, line in enumerate(lines) if f" on {partition} " in line)
    depth = len(lines[start]) - len(lines[start].lstrip())
    section = [lines[start]]
    for line in lines[start + 1:]:
        if "->" in line and len(line) - len(line.lstrip()) <= depth:
            break
        section.append(line)
    return "\n".join(section)


def test_partitions_with_rows_and_no_statistics_are_analysed_once_and_the_tail_count_starts_at_the_watermark(
        api_as, db_vendor):
    if db_vendor != "postgresql":
        pytest.skip("SQLite keeps one plain table and has no planner statistics to miss")
    model = make_model(slug="credit")
    rows = [query(client_id=f"c{d}", ts=(NOW - timedelta(days=d, minutes=m)).isoformat(), request_id=f"r{d}-{m}")
            for d in (0, 1, 2) for m in range(3)]
    assert api_as(ingest_token(model=model)).post("/api/v1/models/credit/queries", {"queries": rows}).status_code == 201
    retention.maintain_partitions()  # day partitions for the three days, and empty ones for the days ahead
    today = partitions.partition_name(model.pk, NOW.astimezone(UTC).date())
    columns = ", ".join(f.column for f in QueryLog._meta.concrete_fields if f.column not in ("id", "request_id"))
    with connection.cursor() as cursor:  # today's partition grows to a size where the plan matters
        cursor.execute(f"INSERT INTO {partitions.PARENT} ({columns}) SELECT {columns} FROM {today}, "  # noqa: S608
                       f"generate_series(1, %s) LIMIT %s", [COPIES, COPIES])
    watermark = QueryLog.objects.filter(model=model).order_by("-id").values_list("id", flat=True).first() - 10
    holding = {name for name in (partitions.partition_name(model.pk, (NOW - timedelta(days=d)).astimezone(UTC).date())
                                 for d in (0, 1, 2))}
    empty = {p.name for p in partitions.partitions(model.pk)} - holding
    assert empty and not (holding | empty) & with_statistics()
    before = tail_plan(model, watermark, today)
    assert f"Filter: (id > {watermark})" in before, before  # every row of the model read, for the last 10

    analysed = analyze_query_partitions()

    assert set(analysed) == holding and analysed[0] == today  # newest first; the empty days are left alone
    assert holding <= with_statistics() and not empty & with_statistics()
    after = tail_plan(model, watermark, today)
    # The primary key, entered at the watermark.
    assert "_pkey on" in after and f"id > {watermark}" in after.partition("Index Cond:")[2], after
    assert analyze_query_partitions() == []  # once
