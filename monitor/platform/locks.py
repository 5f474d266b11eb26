"""PostgreSQL advisory locks per model, each kind in its own namespace (the first key), all listed here so no two
kinds share a number. Transaction-scoped: released at commit or rollback. SQLite serialises writers by itself,
so on SQLite these do nothing."""
from __future__ import annotations

from enum import IntEnum

from django.db import connection


class ModelLock(IntEnum):
    # Ingestion holds it shared for the COPY of a batch; the high-water mark takes it exclusively to wait those out.
    INGESTION = 7331
    # One creator of a model's partitions at a time (a registration and the hourly task may meet).
    PARTITIONS = 7332
    # The parts of a sharded scan record their findings one at a time, so one new actor opens one incident.
    INCIDENTS = 7333
    # Batches carrying categories training never saw code and count them one at a time: two batches naming the
    # same unseen values in another order deadlocked on their rows (bench/ingest.py's mixed form, 503s).
    UNSEEN_CATEGORIES = 7334


def lock_model(kind: ModelLock, model_id: int, *, shared: bool = False) -> None:
    """Hold `kind`'s lock on the model until the current transaction ends (call inside one)."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [int(kind), int(model_id)])  # noqa: S608  # nosec B608
