"""The query log's partitions on PostgreSQL: one per model and UTC day, routed by PostgreSQL itself.

`monitor_querylog` is range-partitioned on (model_id, ts); a partition holds one model's queries of one day, so a
model's retention drops whole partitions of that model (DETACH + DROP, no bulk DELETE) and its scans and pages
touch only its own partitions. Rows for which no partition exists yet (a model registered a minute ago, a
backfill of old days, a clock far ahead) land in the DEFAULT partition; the hourly maintenance task moves them
into partitions of their own. SQLite keeps one plain table and every function here does nothing there.

Each partition carries a unique index on (model_id, request_id): a retry of a request lands on the same day
(same client timestamp, or a server timestamp minutes later) and is refused there by PostgreSQL; see
monitor.ingestion.store for the retries that cross midnight.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction

from monitor.platform.locks import ModelLock, lock_model

PARENT = "monitor_querylog"
DEFAULT = f"{PARENT}_default"
NAME = re.compile(rf"^{PARENT}_m(\d+)_d(\d{{8}})$")


@dataclass(frozen=True)
class Partition:
    name: str
    model_id: int
    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def partitioned() -> bool:
    """True where the query log is partitioned (PostgreSQL, after migration monitor 0007)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                       "WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace", [PARENT])
        return cursor.fetchone() is not None


def partition_name(model_id: int, day: date) -> str:
    return f"{PARENT}_m{int(model_id)}_d{day:%Y%m%d}"


def partitions(model_id: int | None = None) -> list[Partition]:
    """The day partitions that exist, oldest first (the DEFAULT partition is not listed)."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", [PARENT])
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = NAME.match(name)
        if match and (model_id is None or int(match.group(1)) == model_id):
            found.append(Partition(name, int(match.group(1)), datetime.strptime(match.group(2), "%Y%m%d").date()))
    return sorted(found, key=lambda p: (p.model_id, p.day))


def _bound(model_id: int, moment: datetime) -> str:
    return f"({int(model_id)}, '{moment.isoformat()}')"


def create_partition(model_id: int, day: date) -> bool:
    """Create the partition of `model_id` on `day` (UTC), moving in any rows the DEFAULT partition holds for it.
    False if it already exists."""
    name = partition_name(model_id, day)
    part = Partition(name, model_id, day)
    with transaction.atomic(), connection.cursor() as cursor:
        lock_model(ModelLock.PARTITIONS, model_id)
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            return False
        # Built beside the log, filled from DEFAULT, then attached: CREATE ... PARTITION OF would fail when
        # DEFAULT already holds rows of that day. The CHECK lets ATTACH skip scanning the new partition.
        cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
        cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK "  # nosec B608 (our names)
                       f"(model_id = {int(model_id)} AND ts >= %s AND ts < %s)", [part.start, part.end])
        cursor.execute(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE model_id = %s AND ts >= %s AND ts < %s "  # noqa: S608  # nosec B608
                       f"RETURNING *) INSERT INTO {name} SELECT * FROM moved", [model_id, part.start, part.end])
        cursor.execute(f"CREATE UNIQUE INDEX {name}_request ON {name} (model_id, request_id) "
                       "WHERE request_id IS NOT NULL")
        cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM "
                       f"{_bound(model_id, part.start)} TO {_bound(model_id, part.end)}")
        cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
    return True


def ensure_partitions(model_ids: list[int], *, today: date | None = None, back: int = 1, ahead: int = 3) -> list[str]:
    """Partitions for each model from `back` days before today to `ahead` days after; returns those created."""
    if not partitioned():
        return []
    today = today or datetime.now(UTC).date()
    created = []
    for model_id in model_ids:
        for offset in range(-back, ahead + 1):
            day = today + timedelta(days=offset)
            if create_partition(model_id, day):
                created.append(partition_name(model_id, day))
    return created


def default_days(*, not_before: dict[int, date] | None = None) -> list[tuple[int, date, int]]:
    """(model_id, day, rows) held by the DEFAULT partition."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT model_id, (ts AT TIME ZONE 'UTC')::date AS day, count(*) FROM {DEFAULT} "  # noqa: S608  # nosec B608
                       "GROUP BY 1, 2 ORDER BY 1, 2")
        rows = cursor.fetchall()
    return [(int(m), d, int(n)) for m, d, n in rows
            if not_before is None or d >= not_before.get(int(m), date.min)]


def adopt_default_rows(*, not_before: dict[int, date] | None = None) -> list[str]:
    """Give every model-day the DEFAULT partition holds a partition of its own (moving its rows there), except
    days before `not_before[model_id]` (expired: retention deletes them instead)."""
    created = []
    for model_id, day, _ in default_days(not_before=not_before):
        if create_partition(model_id, day):
            created.append(partition_name(model_id, day))
    return created


# At most this many partitions are analysed per call: after a statistics reset or a restore, the backlog is worked
# through over several runs rather than in one long one.
ANALYZE_PER_RUN = 20


def analyze_new_partitions(*, limit: int = ANALYZE_PER_RUN) -> list[str]:
    """ANALYZE the log's partitions that hold rows but have no statistics yet (newest day first); returns them.

    Without statistics PostgreSQL takes `model_id = X` for selective, though each partition holds one model, and
    reads the unfolded tail of the log (`model_id = X AND id > watermark`, which every count and the model page run)
    through an index on model_id, every row of the model with the watermark as a mere filter (the model page: 815 ms
    median on 1 M rows, bench/scale.py). With statistics, from a few rows on, it enters the primary key at the
    watermark (144 ms). Autovacuum analyses a partition about a minute after its first
    rows; this covers a server where it is off or behind. Statistics are read from pg_stats (the catalog, which a
    statistics reset leaves alone); the app role owns the partitions (deploy/postgres/after_migrate.sql)."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s AND NOT EXISTS ("
                       "SELECT 1 FROM pg_stats s WHERE s.schemaname = 'public' AND s.tablename = c.relname "
                       "AND s.attname = 'model_id')", [PARENT])
        names = [row[0] for row in cursor.fetchall() if row[0] == DEFAULT or NAME.match(row[0])]
        names.sort(key=lambda name: (name != DEFAULT, name[-8:]), reverse=True)  # newest day first, DEFAULT last
        analysed = []
        for name in names:
            if len(analysed) >= limit:
                break
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")  # noqa: S608  # nosec B608 (our names)
            if cursor.fetchone()[0]:
                cursor.execute(f"ANALYZE {name}")
                analysed.append(name)
    return analysed


def drop_partition(partition: Partition) -> None:
    """Detach and drop one day partition (its rows go with it, in one catalog change)."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Rows written earlier in this same transaction still owe their deferred foreign-key checks, and
        # PostgreSQL will not drop a table with pending trigger events: run the checks now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {partition.name}")
        cursor.execute(f"DROP TABLE {partition.name}")
