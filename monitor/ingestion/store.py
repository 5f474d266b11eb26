"""Store a validated batch in one transaction: binary COPY on PostgreSQL, bulk INSERT elsewhere; idempotent on
request_id. The rollups the dashboards read are folded from the stored rows afterwards (monitor.ingestion.rollups)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np
import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from monitor.ingestion import pgcopy
from monitor.ingestion.validate import IngestError, IngestRefusal, QueryBatch
from monitor.ingestion.vectors import encode_vectors
from monitor.models import QueryLog, RegisteredModel, UnseenCategory
from monitor.platform.locks import ModelLock, lock_model


@dataclass(frozen=True)
class StoreResult:
    accepted: int
    duplicates: int


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


def _stored_request_ids(model_id: int, wanted: list[str], timestamps: Sequence[datetime]) -> set[str]:
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
    # Shared with every other ingestion; the scanner takes it exclusively to wait out batches in
    # flight before it moves its watermark (see safe_high_water).
    lock_model(ModelLock.INGESTION, model.pk, shared=True)
    hold_model(model)
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
    if batch.unseen_cells:
        code_unseen_categories(model, batch, kept=set(rows.tolist()))
    labels, confidences = batch.labels, batch.confidences
    features = encode_vectors(batch.features)
    outputs = encode_vectors(batch.outputs)
    if connection.vendor == "postgresql":
        _copy_rows(model.id, batch, rows, features, outputs, labels, confidences)
    else:
        QueryLog.objects.bulk_create(
            [QueryLog(model_id=model.id, client_id=batch.client_ids[i], ts=batch.timestamps[i],
                      features=features[i].tobytes(), outputs=outputs[i].tobytes(), label=int(labels[i]),
                      confidence=float(confidences[i]), request_id=batch.request_ids[i]) for i in rows.tolist()],
            batch_size=500,
        )
    return StoreResult(accepted=len(rows), duplicates=len(batch) - len(rows))


def hold_model(model: RegisteredModel) -> None:
    """Refuse a batch for a model that is gone, and keep it from going until the batch commits.

    On PostgreSQL the query log has no foreign key to its model (migration 0024): its check ran once per row, a
    third of a COPY's cost (bench/ingest.py). This does what that check did, once per batch: the model's row is
    locked FOR KEY SHARE until the batch commits, and a model deleted before the batch got here is refused. A
    model's delete locks that row first (`wait_for_batches_in_flight`), so the rows of a batch in flight are deleted
    with the others rather than left behind. SQLite keeps its foreign key; the read is the same."""
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {RegisteredModel._meta.db_table} WHERE id = %s{lock}", [model.pk])  # noqa: S608  # nosec B608 (our table name, a constant clause)
        if cursor.fetchone() is None:
            raise IngestError(f"model {model.slug!r} was deleted before this batch could be stored; nothing was stored",
                              refusal=IngestRefusal.MODEL_GONE)


def wait_for_batches_in_flight(sender: type, instance: RegisteredModel, using: str = "default", **kwargs: object) -> None:
    """Before a model is deleted (pre_delete, connected in monitor/apps.py), inside the delete's transaction: lock its
    row FOR UPDATE, which waits for every batch holding it (hold_model) to commit, before Django deletes the model's
    queries. Without it, a batch committing between that DELETE and the model's own would leave its rows behind;
    the foreign key used to refuse such a delete. Batches arriving meanwhile wait, then find the model gone."""
    db = connections[using]
    if db.vendor != "postgresql":
        return
    with db.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {RegisteredModel._meta.db_table} WHERE id = %s FOR UPDATE", [instance.pk])  # noqa: S608  # nosec B608 (our table name)


MAX_UNSEEN_CATEGORIES = 10_000  # per model: past it, new values share one row per feature (a flood of made-up ones)


def code_unseen_categories(model: RegisteredModel, batch: QueryBatch, *, kept: set[int]) -> None:
    """Give each category training never saw its code in the log (-id of its UnseenCategory row, made once per
    model, feature and value, inside the batch's transaction) and count the kept rows that carry it."""
    names = model.schema.names
    cells = [(row, index, value) for row, index, value in batch.unseen_cells if row in kept]
    if not cells:
        return
    lock_model(ModelLock.UNSEEN_CATEGORIES, model.pk)
    wanted = {(names[index], value) for _, index, value in cells}
    existing = {(feature, value): pk for pk, feature, value in UnseenCategory.objects.filter(
        model=model, feature__in={f for f, _ in wanted}, value__in={v for _, v in wanted}).values_list(
        "id", "feature", "value")}
    new = wanted - existing.keys()
    if new and UnseenCategory.objects.filter(model=model).count() + len(new) > MAX_UNSEEN_CATEGORIES:
        overflow = f"(one of more than {MAX_UNSEEN_CATEGORIES:,} unseen categories)"
        cells = [(row, index, value if (names[index], value) in existing else overflow) for row, index, value in cells]
        new = {(names[index], value) for _, index, value in cells} - existing.keys()
    if new:
        UnseenCategory.objects.bulk_create([UnseenCategory(model=model, feature=feature, value=value)
                                            for feature, value in sorted(new)], ignore_conflicts=True)
        existing |= {(feature, value): pk for pk, feature, value in UnseenCategory.objects.filter(
            model=model, feature__in={f for f, _ in new}, value__in={v for _, v in new}).values_list(
            "id", "feature", "value") if (feature, value) in new}
    counts: dict[int, int] = {}
    for row, index, value in cells:
        pk = existing[(names[index], value)]
        batch.features[row, index] = -pk
        counts[pk] = counts.get(pk, 0) + 1
    # One UPDATE per distinct count, not per category: a batch of a few thousand rows carries hundreds of unseen
    # categories but a few dozen distinct counts (an UPDATE each cost most of a mixed-type batch's store; one CASE
    # of hundreds of branches took Django longer to compile than PostgreSQL to run).
    by_count: dict[int, list[int]] = {}
    for pk, count in counts.items():
        by_count.setdefault(count, []).append(pk)
    for count, pks in sorted(by_count.items()):
        UnseenCategory.objects.filter(pk__in=sorted(pks)).update(queries=F("queries") + count)


def _copy_rows(model_id: int, batch: QueryBatch, rows: np.ndarray, features: np.ndarray, outputs: np.ndarray,
               labels: np.ndarray, confidences: np.ndarray) -> None:
    """Binary COPY of the kept rows, the payload built for the whole batch at once (monitor.ingestion.pgcopy)."""
    table = QueryLog._meta.db_table
    keep = rows.tolist()
    client_ids, request_ids = batch.client_ids, batch.request_ids
    payload = pgcopy.copy_payload(
        model_id=model_id, micros=batch.micros[rows],
        features=features[rows], outputs=outputs[rows], labels=labels[rows], confidences=confidences[rows],
        client_ids=[client_ids[i] for i in keep], request_ids=[request_ids[i] for i in keep])
    with connection.cursor() as cursor:
        try:
            with cursor.cursor.copy(f"COPY {table} ({', '.join(pgcopy.COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:  # noqa: S608 (our table name)
                copy.write(payload)
        except psycopg.errors.IntegrityError as exc:
            # Django wraps errors of cursor.execute, not of the raw cursor's copy(): without this a stored
            # request_id (a client's retry) escaped store_queries' handler as a 500.
            raise IntegrityError(str(exc)) from exc


def safe_high_water(model: RegisteredModel) -> int:
    """The highest query id below which no ingestion transaction can still commit.

    Ids are drawn when rows are written, not when they commit: a reader (the scanner, the rollup fold) that read
    max(id) while an older batch was still in flight would step over it for ever. On PostgreSQL each ingestion
    holds a shared advisory lock for its transaction; taking it exclusively here waits those out. SQLite has a
    single writer, so its committed max(id) is already safe.
    """
    with transaction.atomic():
        lock_model(ModelLock.INGESTION, model.pk)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {QueryLog._meta.db_table} WHERE model_id = %s",  # noqa: S608  # nosec B608
                           [model.pk])
            return int(cursor.fetchone()[0])
