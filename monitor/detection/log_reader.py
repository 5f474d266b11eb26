"""Reading a model's query log for the detectors: the new queries of an id range (or of one client-hash shard) in
chunks, with the database-specific SQL, decoded into a `QueryBatch`; and a calibration window's client sample."""
from __future__ import annotations

import math
import zlib

import numpy as np
from django.db import connection

from monitor.detection.detectors import QueryBatch
from monitor.detection.space import detection_features
from monitor.ingestion.vectors import decode_vectors
from monitor.models import QueryLog, RegisteredModel


def _epoch_micros_expression() -> str:
    """A row's ts as exact integer microseconds since the epoch, in each database's SQL.

    Both databases hand over the same integer and Python makes the float (`epoch_seconds`), so the same rows give
    the same timestamps on both. SQLite's julianday() keeps milliseconds only and its float arithmetic put an exact
    second about 12 µs early (12:00:00 read as 11:59:59.99998), so a query on a window's boundary fell in the window
    before on SQLite and in its own on PostgreSQL. Django stores SQLite's ts as UTC text, 'YYYY-MM-DD HH:MM:SS'
    with '.ffffff' unless the microseconds are 0: the whole seconds of its first 19 characters (strftime over the
    whole text rounds to the millisecond, so 11:59:59.999999 became 12:00:00), then the six digits after them.
    """
    if connection.vendor == "postgresql":
        return "(EXTRACT(EPOCH FROM ts) * 1000000)::int8"  # EXTRACT gives an exact numeric (PostgreSQL 14+)
    return ("CAST(strftime('%%s', substr(ts, 1, 19)) AS INTEGER) * 1000000 "
            "+ CAST(substr(ts || '.000000', 21, 6) AS INTEGER)")


def epoch_seconds(micros: list[int]) -> np.ndarray:
    """Seconds since the epoch from integer microseconds: one correctly rounded division, whatever the database."""
    return np.asarray(micros, dtype=np.int64) / 1_000_000.0


def client_shard(client_id: str, count: int) -> int:
    """The shard of a client among `count` (SQLite; PostgreSQL filters with its own hashtext)."""
    return zlib.crc32(client_id.encode()) % count


def load_queries(model: RegisteredModel, *, after_id: int, upto_id: int, limit: int,
                 exclude_clients: tuple[str, ...] = (), shard: tuple[int, int] | None = None) -> tuple[QueryBatch, int]:
    """Queries with after_id < id ≤ upto_id in id order, at most `limit` read; returns the batch and the id it
    got to (`upto_id` once the range is exhausted). `shard` = (index, count) keeps the clients of one shard."""
    table = QueryLog._meta.db_table
    where, params = "model_id = %s AND id > %s AND id <= %s", [model.pk, after_id, upto_id]
    if shard is not None and connection.vendor == "postgresql":
        where += " AND (hashtext(client_id) & 2147483647) %% %s = %s"
        params += [shard[1], shard[0]]
    sql = (f"SELECT id, client_id, {_epoch_micros_expression()}, features, outputs FROM {table} "  # noqa: S608  # nosec B608
           f"WHERE {where} ORDER BY id LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        rows = cursor.fetchall()
    reached = rows[-1][0] if len(rows) == limit else upto_id
    if shard is not None and connection.vendor != "postgresql":
        rows = [row for row in rows if client_shard(row[1], shard[1]) == shard[0]]
    if exclude_clients:
        excluded = set(exclude_clients)
        rows = [row for row in rows if row[1] not in excluded]
    d, k = model.n_features, len(model.class_labels)
    batch = QueryBatch(
        query_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        client_ids=np.array([r[1] for r in rows], dtype=str) if rows else np.empty(0, dtype=str),
        timestamps=epoch_seconds([r[2] for r in rows]),
        features=detection_features(decode_vectors([r[3] for r in rows], d), model.schema),
        outputs=decode_vectors([r[4] for r in rows], k),
    )
    return batch, reached


def load_window(model: RegisteredModel, *, from_id: int, upto: int, exclude_clients: tuple[str, ...],
                cap: int) -> tuple[QueryBatch, int, tuple[int, int] | None]:
    """A calibration window's queries, or when it holds more than `cap`, every query of a hash sample of its
    clients: whole clients over the whole window, not the window's first hours (which left per-client statistics
    fitted on the few clients busy enough early on, and benign clients flagged at ten times the budget).
    Returns (batch, the id it got to, the (index, count) shard sampled or None)."""
    rows = QueryLog.objects.filter(model=model, id__gt=from_id, id__lte=upto).count()
    if rows <= cap:
        batch, last_id = load_queries(model, after_id=from_id, upto_id=upto, limit=cap, exclude_clients=exclude_clients)
        return batch, last_id, None
    shard = (0, math.ceil(rows / cap))
    # PostgreSQL filters the clients in SQL; SQLite reads the window and filters in Python.
    limit = int(cap * 1.25) if connection.vendor == "postgresql" else rows
    batch, last_id = load_queries(model, after_id=from_id, upto_id=upto, limit=limit, exclude_clients=exclude_clients,
                                  shard=shard)
    return batch, last_id, shard
