"""Store a validated batch in one transaction: COPY on PostgreSQL, bulk INSERT elsewhere, plus the client-minute,
client-day and model-hour rollups; idempotent on request_id."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import IntegrityError, connection, transaction

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
    """
    request_ids = [rid for rid in batch.request_ids if rid is not None]
    if len(set(request_ids)) == len(request_ids):
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


def _stored_request_ids(model_id: int, wanted: list[str]) -> set[str]:
    table = QueryLog._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT request_id FROM {table} WHERE model_id = %s AND request_id = ANY(%s)",  # noqa: S608  # nosec B608
                           [model_id, wanted])
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
        stored = _stored_request_ids(model.id, sorted(set(wanted)))
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


def _copy_rows(model_id: int, batch: QueryBatch, rows: np.ndarray, features: np.ndarray, outputs: np.ndarray,
               labels: np.ndarray, confidences: np.ndarray) -> None:
    table = QueryLog._meta.db_table
    columns = "model_id, client_id, ts, features, outputs, label, confidence, request_id"
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # noqa: S608 (our table name)
            for i in rows:
                copy.write_row((model_id, batch.client_ids[i], batch.timestamps[i], features[i].tobytes(),
                                outputs[i].tobytes(), int(labels[i]), float(confidences[i]), batch.request_ids[i]))


def _update_rollup(model_id: int, batch: QueryBatch, rows: np.ndarray, confidences: np.ndarray) -> None:
    """Add the batch to the three rollups dashboards read: client × minute, client × day, model × hour."""
    minutes: dict[tuple[str, datetime], list[float]] = defaultdict(lambda: [0, 0.0])
    for i in rows:
        bucket = minutes[(batch.client_ids[i], batch.timestamps[i].replace(second=0, microsecond=0))]
        bucket[0] += 1
        bucket[1] += float(confidences[i])
    days: dict[tuple[str, object], list[float]] = defaultdict(lambda: [0, 0.0])
    hours: dict[tuple[datetime], list[float]] = defaultdict(lambda: [0, 0.0])
    for (client, minute), (count, total) in minutes.items():
        for key, target in (((client, minute.date()), days), ((minute.replace(minute=0),), hours)):
            target[key][0] += count
            target[key][1] += total
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
