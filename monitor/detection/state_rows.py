"""The detectors' carried state, stored as one row per (model, detector, client).

A detector's state is {section: {client id: entry}} (see `Detector`). A scan reads the rows of the clients
in its chunk only, or, for a detector that compares clients, every row still within its horizon; it writes
back the rows of its chunk's clients and nothing else, so its cost follows the new queries, not the history
or the number of clients seen before, and parts of one scan that hold different clients never touch the
same row. Rows of clients not seen within a detector's horizon are deleted at the end of a scan.

Between writes a part keeps the rows it has changed in a `StateBuffer`, encoded as they are stored, and writes
them once every SCAN_STATE_FLUSH_ROWS queries (or SCAN_STATE_FLUSH_BYTES of rows), together with its findings and
its watermark: a busy client appears in every chunk of a day, and rewriting its rows after each chunk was a third
of a 5,000-client scan's time and most of the table's churn under autovacuum.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import psycopg
from django.db import connection
from django.db.models import Q

from monitor.detection.detectors import Detector, QueryBatch
from monitor.models import RegisteredModel, ScannerState

TABLE = ScannerState._meta.db_table
# Keeps every IN (...) list under SQLite's smallest limit on bound parameters.
IN_LIST_SIZE = 900


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for lo in range(0, len(values), IN_LIST_SIZE):
        yield values[lo:lo + IN_LIST_SIZE]


def client_last_seen(batch: QueryBatch) -> dict[str, float]:
    """Each client of the batch and the time of its last query in it."""
    if len(batch) == 0:
        return {}
    clients, codes = np.unique(batch.client_ids, return_inverse=True)
    last = np.full(len(clients), -np.inf)
    np.maximum.at(last, codes.reshape(-1), batch.timestamps)
    return dict(zip(clients.tolist(), last.tolist(), strict=True))


def _decode_into(state: dict[str, dict[str, Any]], rows: Iterable[tuple[str, str, bytes]]) -> None:
    """Add stored rows to a scan's state: {detector: {section: {client: entry}}}."""
    for detector, client, data in rows:
        sections = state.setdefault(detector, {})
        for section, entry in orjson.loads(data).items():
            sections.setdefault(section, {})[client] = entry


def _client_rows(model: RegisteredModel, detectors: list[str], clients: list[str]) -> Iterable[tuple[str, str, bytes]]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT detector, client_id, data FROM {TABLE} "  # noqa: S608  # nosec B608
                           "WHERE model_id = %s AND detector = ANY(%s) AND client_id = ANY(%s)",
                           [model.pk, detectors, clients])
            return cursor.fetchall()
    found: list[tuple[str, str, bytes]] = []
    for part in _chunks(clients):
        found += ScannerState.objects.filter(model=model, detector__in=detectors, client_id__in=part).values_list(
            "detector", "client_id", "data")
    return found


@dataclass
class StateBuffer:
    """The rows a part has changed since its last write, encoded as stored: (detector, client) -> (data, seen),
    data None for a row to delete. Reads go to the buffer first, then to the table for the rest."""

    rows: dict[tuple[str, str], tuple[bytes | None, float]] = field(default_factory=dict)
    stored: set[tuple[str, str]] = field(default_factory=set)  # rows read from the table since the last write
    nbytes: int = 0

    def load(self, model: RegisteredModel, detectors: Sequence[Detector], clients: Sequence[str], *,
             latest: float) -> dict[str, dict[str, Any]]:
        """{detector name: state} for a chunk with these clients whose last query is at `latest`."""
        state: dict[str, dict[str, Any]] = {detector.name: {} for detector in detectors}
        per_client = [d.name for d in detectors if not d.compares_clients]
        if per_client:
            # A client's rows are buffered for every per-client detector of the part at once (`keep`).
            unread = [c for c in clients if (per_client[0], c) not in self.rows]
            if unread:
                self._read(state, _client_rows(model, per_client, unread))
            buffered = ((d, c, self.rows[(d, c)][0]) for d in per_client for c in clients if (d, c) in self.rows)
            _decode_into(state, ((d, c, data) for d, c, data in buffered if data is not None))
        for detector in detectors:
            if detector.compares_clients:
                since = latest - detector.state_horizon_seconds
                self._read(state, ScannerState.objects.filter(model=model, detector=detector.name, seen_at__gte=since)
                           .values_list("detector", "client_id", "data"))
                _decode_into(state, ((detector.name, c, data) for (d, c), (data, seen) in self.rows.items()
                                     if d == detector.name and data is not None and seen >= since))
        return state

    def _read(self, state: dict[str, dict[str, Any]], rows: Iterable[tuple[str, str, bytes]]) -> None:
        """Stored rows, less those the buffer has changed since (the buffer's are newer)."""
        fresh = [(d, c, data) for d, c, data in rows if (d, c) not in self.rows]
        self.stored.update((d, c) for d, c, _ in fresh)
        _decode_into(state, fresh)

    def keep(self, detectors: Sequence[Detector], new_state: Mapping[str, Mapping[str, Any]],
             last_seen: Mapping[str, float]) -> None:
        """The rows of the chunk's clients (`last_seen`) after its scan; a client left with no entry loses its row."""
        for detector in detectors:
            sections = new_state.get(detector.name) or {}
            for client, seen in last_seen.items():
                data = {section: entries[client] for section, entries in sections.items() if client in entries}
                encoded = orjson.dumps(data) if data else None
                old, _ = self.rows.get((detector.name, client), (None, 0.0))
                self.nbytes += len(encoded or b"") - len(old or b"")
                self.rows[(detector.name, client)] = (encoded, seen)

    def write(self, model: RegisteredModel) -> None:
        """Write the buffered rows (call inside the transaction that moves the watermark) and empty the buffer."""
        upserts = [(d, c, data, seen) for (d, c), (data, seen) in self.rows.items() if data is not None]
        gone = [key for key, (data, _) in self.rows.items() if data is None and key in self.stored]
        if upserts or gone:
            save_rows(model, upserts, gone)
        self.rows.clear()
        self.stored.clear()
        self.nbytes = 0


def save_rows(model: RegisteredModel, upserts: list[tuple[str, str, bytes, float]], gone: list[tuple[str, str]]) -> None:
    """Upsert (detector, client, data, seen) rows and delete (detector, client) rows."""
    if connection.vendor == "postgresql":
        _save_postgresql(model, upserts, gone)
        return
    ScannerState.objects.bulk_create(
        [ScannerState(model=model, detector=d, client_id=c, data=data, seen_at=seen) for d, c, data, seen in upserts],
        batch_size=500, update_conflicts=True, unique_fields=["model", "detector", "client_id"],
        update_fields=["data", "seen_at"])
    for detector, client in gone:
        ScannerState.objects.filter(model=model, detector=detector, client_id=client).delete()


def _save_postgresql(model: RegisteredModel, upserts: list[tuple[str, str, bytes, float]],
                     gone: list[tuple[str, str]]) -> None:
    """One statement each: an upsert from arrays, a delete from arrays (no per-row SQL to build).

    The upsert's arrays go as binary parameters of a server-side bound statement: Django's cursor binds on the
    client, which quotes every state blob into the SQL text (a quarter of the time the state writes took)."""
    if upserts:
        detectors, clients, data, seen = (list(column) for column in zip(*upserts, strict=True))
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as raw:
            raw.execute(
                f"INSERT INTO {TABLE} (model_id, detector, client_id, data, seen_at) "  # noqa: S608  # nosec B608
                "SELECT %s, d, c, b, s FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::float8[]) AS u(d, c, b, s) "
                "ON CONFLICT (model_id, detector, client_id) DO UPDATE SET data = EXCLUDED.data, seen_at = EXCLUDED.seen_at",
                [model.pk, detectors, clients, data, seen], binary=True, prepare=False)
    with connection.cursor() as cursor:
        if gone:
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE model_id = %s AND (detector, client_id) IN "  # noqa: S608  # nosec B608
                "(SELECT d, c FROM unnest(%s::text[], %s::text[]) AS u(d, c))",
                [model.pk, [d for d, _ in gone], [c for _, c in gone]])


def expire_state(model: RegisteredModel, detectors: Sequence[Detector], *, latest: float) -> int:
    """Delete the rows of clients not seen within each detector's horizon before `latest`; returns how many."""
    stale = Q()
    for detector in detectors:
        stale |= Q(detector=detector.name, seen_at__lt=latest - detector.state_horizon_seconds)
    if not detectors:
        return 0
    deleted, _ = ScannerState.objects.filter(stale, model=model).delete()
    return deleted


def read_rows(model: RegisteredModel) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row of the model, decoded: {(detector, client): {section: entry}} (for tests and inspection)."""
    return {(detector, client): orjson.loads(data) for detector, client, data
            in ScannerState.objects.filter(model=model).values_list("detector", "client_id", "data")}
