"""Reading a model's query log for the detectors: the new queries of an id range (or of one client-hash shard) in
chunks, with the database-specific SQL, decoded into a `QueryBatch`; and a calibration window's client sample."""
from __future__ import annotations

import math
import struct

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


_MASK32 = 0xFFFFFFFF


def _rotate(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    for rotations in ((4, 6, 8), (16, 19, 4)):
        a = ((a - c) & _MASK32) ^ _rotate(c, rotations[0])
        c = (c + b) & _MASK32
        b = ((b - a) & _MASK32) ^ _rotate(a, rotations[1])
        a = (a + c) & _MASK32
        c = ((c - b) & _MASK32) ^ _rotate(b, rotations[2])
        b = (b + a) & _MASK32
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c = ((c ^ b) - _rotate(b, 14)) & _MASK32
    a = ((a ^ c) - _rotate(c, 11)) & _MASK32
    b = ((b ^ a) - _rotate(a, 25)) & _MASK32
    c = ((c ^ b) - _rotate(b, 16)) & _MASK32
    a = ((a ^ c) - _rotate(c, 4)) & _MASK32
    b = ((b ^ a) - _rotate(a, 14)) & _MASK32
    return ((c ^ b) - _rotate(b, 24)) & _MASK32


def postgres_hashtext(text: str) -> int:
    """PostgreSQL's hashtext(text) for a deterministic collation, as an unsigned 32-bit number: Bob Jenkins'
    lookup3 over the UTF-8 bytes (`hash_bytes`, src/common/hashfn.c, little-endian), so that SQLite puts each client
    in the shard PostgreSQL's SQL puts it in."""
    data = text.encode()
    a = b = c = (0x9E3779B9 + len(data) + 3923095) & _MASK32
    whole = len(data) - len(data) % 12
    for start in range(0, whole, 12):
        x, y, z = struct.unpack_from("<3I", data, start)
        a, b, c = _mix((a + x) & _MASK32, (b + y) & _MASK32, (c + z) & _MASK32)
    # The last 0 to 11 bytes; the lowest byte of c is left for the length, so bytes 8-10 go to its upper three.
    tail = data[whole:]
    x, y, z = struct.unpack("<3I", tail[:8].ljust(8, b"\0") + b"\0" + tail[8:11].ljust(3, b"\0"))
    return _final((a + x) & _MASK32, (b + y) & _MASK32, (c + z) & _MASK32)


def client_shard(client_id: str, count: int) -> int:
    """The shard of a client among `count`: the shard PostgreSQL's SQL filter (`hashtext`) puts it in, on either
    database, so a calibration window's client sample and a scan's parts hold the same clients on both."""
    return (postgres_hashtext(client_id) & 0x7FFFFFFF) % count


def load_queries(model: RegisteredModel, *, after_id: int, upto_id: int, limit: int,
                 exclude_clients: tuple[str, ...] = (), shard: tuple[int, int] | None = None) -> tuple[QueryBatch, int]:
    """Queries with after_id < id ≤ upto_id in id order, at most `limit` read; returns the batch and the id it
    got to (`upto_id` once the range is exhausted). `shard` = (index, count) keeps the clients of one shard, and
    then `limit` counts that shard's queries, on either database."""
    table = QueryLog._meta.db_table
    where, params = "model_id = %s AND id > %s AND id <= %s", [model.pk, after_id, upto_id]
    if shard is not None and connection.vendor == "postgresql":
        where += " AND (hashtext(client_id) & 2147483647) %% %s = %s"
        params += [shard[1], shard[0]]
    sql = (f"SELECT id, client_id, {_epoch_micros_expression()}, features, outputs FROM {table} "  # noqa: S608  # nosec B608
           f"WHERE {where} ORDER BY id LIMIT %s")
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        if shard is None or connection.vendor == "postgresql":
            cursor.execute(sql, [*params, limit])
            rows = cursor.fetchall()
        else:  # SQLite has no hashtext: read on in id order, keep the shard's rows, stop where PostgreSQL's LIMIT would
            after = after_id
            while len(rows) < limit:
                cursor.execute(sql, [model.pk, after, upto_id, limit])
                page = cursor.fetchall()
                rows += [row for row in page if client_shard(row[1], shard[1]) == shard[0]]
                if len(page) < limit:
                    break
                after = page[-1][0]
            rows = rows[:limit]
    reached = rows[-1][0] if len(rows) == limit else upto_id
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
    batch, last_id = load_queries(model, after_id=from_id, upto_id=upto, limit=int(cap * 1.25),
                                  exclude_clients=exclude_clients, shard=shard)
    return batch, last_id, shard
