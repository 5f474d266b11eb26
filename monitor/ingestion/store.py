"""Store a validated batch in one transaction: COPY on PostgreSQL, bulk INSERT elsewhere, plus the client-minute,
client-day and model-hour rollups; idempotent on request_id."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np
import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from monitor.ingestion.validate import QueryBatch
from monitor.ingestion.vectors import encode_vectors
from monitor.models import ClientDayRollup, ModelHourRollup, QueryLog, QueryRollup, RegisteredModel

INGEST_LOCK_CLASS = 7331  # advisory-lock namespace; monitor.detection.scanning waits on it


@dataclass(frozen=True)
class StoreResult:
    accepted: int
    duplicates: int
    ids_known: bool = False


def store_queries(model: RegisteredModel, batch: QueryBatch, *, attempts: int = 3) -> StoreResult:
    """Store a validated batch atomically; rows whose request_id is already stored count as duplicates.

    Optimistic: most batches are new, so write them straight away and let the unique index object.
    Only a batch that collides (a client's retry) pays for looking its request_ids up first.

    On PostgreSQL the unique index is per partition (model and day). A retry lands in the partition of its
    first attempt when it carries the same timestamp, or when the server stamps it later that same day; only a
    server-stamped retry after midnight could land in a new partition. So for INGEST_RETRY_WINDOW_HOURS after
    midnight a batch with request_ids and server-stamped rows is looked up first, over the days it spans and
    that window before them.
    """
    request_ids = [rid for rid in batch.request_ids if rid is not None]
    # Only rows the server stamped can be a retry that lands on another day than its first attempt.
    crosses_midnight = bool(request_ids) and batch.server_stamped > 0 and _after_midnight(timezone.now())
    optimistic = len(set(request_ids)) == len(request_ids) and not crosses_midnight
    if optimistic:
        try:
            with transaction.atomic():
                return _store_once(model, batch, check_duplicates=False)
        except IntegrityError:
            pass
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return _store_once(model, batch, check_duplicates=True)
        except IntegrityError:
            # A concurrent request stored one of our request_ids between our check and our write:
            # retry, and the check will now see it.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _retry_window() -> timedelta:
    return timedelta(hours=settings.INGEST_RETRY_WINDOW_HOURS)


def _after_midnight(now: datetime) -> bool:
    """Within the retry window after 00:00 UTC, on a partitioned log."""
    return connection.vendor == "postgresql" and (now - _retry_window()).date() != now.astimezone(UTC).date()


def _stored_request_ids(model_id: int, wanted: list[str], timestamps: list[datetime]) -> set[str]:
    table = QueryLog._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Every partition a duplicate can be in: the whole days the batch spans, from the retry window
            # before its earliest timestamp (PostgreSQL prunes the others).
            start = datetime.combine((min(timestamps) - _retry_window()).astimezone(UTC).date(), time.min, UTC)
            end = datetime.combine(max(timestamps).astimezone(UTC).date(), time.min, UTC) + timedelta(days=1)
            cursor.execute(f"SELECT request_id FROM {table} WHERE model_id = %s AND request_id = ANY(%s) "  # noqa: S608  # nosec B608
                           "AND ts >= %s AND ts < %s", [model_id, wanted, start, end])
            return {row[0] for row in cursor.fetchall()}
    return set(QueryLog.objects.filter(model_id=model_id, request_id__in=wanted).values_list("request_id", flat=True))


def _store_once(model: RegisteredModel, batch: QueryBatch, *, check_duplicates: bool) -> StoreResult:
    if connection.vendor == "postgresql":
        # Shared with every other ingestion; the scanner takes it exclusively to wait out batches in
        # flight before it moves its watermark (see monitor.detection.scanning.safe_high_water).
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [INGEST_LOCK_CLASS, model.pk])
    keep = np.ones(len(batch), dtype=bool)
    wanted = [rid for rid in batch.request_ids if rid is not None] if check_duplicates else []
    if wanted:
        stored = _stored_request_ids(model.id, sorted(set(wanted)), batch.timestamps)
        seen: set[str] = set()
        for index, rid in enumerate(batch.request_ids):
            if rid is None:
                continue
            if rid in stored or rid in seen:
                keep[index] = False
            seen.add(rid)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return StoreResult(accepted=0, duplicates=len(batch))
    labels, confidences = batch.labels, batch.confidences
    features = encode_vectors(batch.features)
    outputs = encode_vectors(batch.outputs)
    if connection.vendor == "postgresql":
        _copy_rows(model.id, batch, rows, features, outputs, labels, confidences)
    else:
        QueryLog.objects.bulk_create(
            [QueryLog(model_id=model.id, client_id=batch.client_ids[i], ts=batch.timestamps[i],
                      features=features[i].tobytes(), outputs=outputs[i].tobytes(), label=int(labels[i]),
                      confidence=float(confidences[i]), request_id=batch.request_ids[i]) for i in rows],
            batch_size=500,
        )
    _update_rollup(model.id, batch, rows, confidences)
    return StoreResult(accepted=len(rows), duplicates=len(batch) - len(rows))


COPY_TYPES = ["int8", "varchar", "timestamptz", "bytea", "bytea", "int2", "float8", "varchar"]


def _copy_rows(model_id: int, batch: QueryBatch, rows: np.ndarray, features: np.ndarray, outputs: np.ndarray,
               labels: np.ndarray, confidences: np.ndarray) -> None:
    """Binary COPY: the vectors go as raw bytes (text COPY would hex-encode them and the server decode them)."""
    table = QueryLog._meta.db_table
    columns = "model_id, client_id, ts, features, outputs, label, confidence, request_id"
    client_ids, timestamps, request_ids = batch.client_ids, batch.timestamps, batch.request_ids
    label_list, confidence_list = labels.tolist(), confidences.tolist()
    with connection.cursor() as cursor:
        try:
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:  # noqa: S608 (our table name)
                copy.set_types(COPY_TYPES)
                write = copy.write_row
                for i in rows.tolist():
                    write((model_id, client_ids[i], timestamps[i], features[i].tobytes(), outputs[i].tobytes(),
                           label_list[i], confidence_list[i], request_ids[i]))
        except psycopg.errors.IntegrityError as exc:
            # Django wraps errors of cursor.execute, not of the raw cursor's copy(): without this a stored
            # request_id (a client's retry) escaped store_queries' handler as a 500.
            raise IntegrityError(str(exc)) from exc


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _grouped(codes: np.ndarray, buckets: np.ndarray, confidences: np.ndarray) -> list[tuple[int, int, int, float]]:
    """(code, bucket, count, confidence sum) for each distinct (code, bucket) pair, sorted."""
    keys = np.stack([codes, buckets], axis=1)
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse, minlength=len(distinct))
    sums = np.bincount(inverse, weights=confidences, minlength=len(distinct))
    return list(zip(distinct[:, 0].tolist(), distinct[:, 1].tolist(), counts.tolist(), sums.tolist(), strict=True))


def _update_rollup(model_id: int, batch: QueryBatch, rows: np.ndarray, confidences: np.ndarray) -> None:
    """Add the batch to the three rollups dashboards read: client × minute, client × day, model × hour."""
    index: dict[str, int] = {}
    client_ids = batch.client_ids
    codes = np.fromiter((index.setdefault(client_ids[i], len(index)) for i in rows.tolist()), dtype=np.int64,
                        count=len(rows))
    names = list(index)
    seconds = np.fromiter((batch.timestamps[i].timestamp() for i in rows.tolist()), dtype=np.float64, count=len(rows))
    kept = confidences[rows]
    minutes = {(names[c], EPOCH + timedelta(minutes=m)): [n, total]
               for c, m, n, total in _grouped(codes, np.floor(seconds / 60).astype(np.int64), kept)}
    days = {(names[c], (EPOCH + timedelta(days=d)).date()): [n, total]
            for c, d, n, total in _grouped(codes, np.floor(seconds / 86400).astype(np.int64), kept)}
    hours = {(EPOCH + timedelta(hours=h),): [n, total]
             for _, h, n, total in _grouped(np.zeros(len(rows), dtype=np.int64), np.floor(seconds / 3600).astype(np.int64), kept)}
    _upsert(QueryRollup, ("client_id", "minute"), model_id, minutes, casts=("text", "timestamptz"))
    _upsert(ClientDayRollup, ("client_id", "day"), model_id, days, casts=("text", "date"))
    _upsert(ModelHourRollup, ("hour",), model_id, hours, casts=("timestamptz",))


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.isoformat() if hasattr(value, "isoformat") else value


def _upsert(table_model: type, keys: tuple[str, ...], model_id: int, buckets: dict, *, casts: tuple[str, ...]) -> None:
    """count += n, confidence_sum += s for each bucket, inserting missing rows."""
    table = table_model._meta.db_table
    columns = ", ".join(keys)
    insert = f"INSERT INTO {table} (model_id, {columns}, count, confidence_sum) "
    conflict = (f"ON CONFLICT (model_id, {columns}) DO UPDATE SET count = {table}.count + excluded.count, "  # noqa: S608  # nosec B608
                f"confidence_sum = {table}.confidence_sum + excluded.confidence_sum")
    # Sorted keys: two concurrent batches lock rollup rows in the same order and cannot deadlock.
    items = sorted(buckets.items())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over arrays instead of one per bucket.
            arrays = [[key[j] for key, _ in items] for j in range(len(keys))]
            unnest = ", ".join(f"%s::{cast}[]" for cast in casts)
            source = f"SELECT %s, * FROM unnest({unnest}, %s::bigint[], %s::float8[]) "  # noqa: S608  # nosec B608
            cursor.execute(insert + source + conflict,  # noqa: S608 (table and column names are ours)
                           [model_id, *arrays, [int(v[0]) for _, v in items], [float(v[1]) for _, v in items]])
        else:
            values = f"VALUES (%s, {', '.join(['%s'] * len(keys))}, %s, %s) "
            cursor.executemany(insert + values + conflict,  # noqa: S608
                               [(model_id, *map(_sqlite_value, key), int(v[0]), float(v[1])) for key, v in items])
