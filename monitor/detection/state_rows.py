"""The detectors' carried state, stored as one row per (model, detector, client).

A detector's state is {section: {client id: entry}} (see `Detector`). A scan reads the rows of the clients
in its chunk only, or, for a detector that compares clients, every row still within its horizon; it writes
back the rows of its chunk's clients and nothing else, so its cost follows the new queries, not the history
or the number of clients seen before, and parts of one scan that hold different clients never touch the
same row. Rows of clients not seen within a detector's horizon are deleted at the end of a scan.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
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


@dataclass
class LoadedState:
    """The state passed to a scan, and which (detector, client) rows it came from."""

    state: dict[str, dict[str, Any]]
    rows: set[tuple[str, str]] = field(default_factory=set)

    def add(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        for detector, client, data in rows:
            self.rows.add((detector, client))
            sections = self.state.setdefault(detector, {})
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


def load_state(model: RegisteredModel, detectors: Sequence[Detector], clients: Sequence[str], *,
               latest: float) -> LoadedState:
    """{detector name: state} for a chunk with these clients whose last query is at `latest`."""
    loaded = LoadedState({detector.name: {} for detector in detectors})
    per_client = [d.name for d in detectors if not d.compares_clients]
    if per_client:
        loaded.add(_client_rows(model, per_client, list(clients)))
    for detector in detectors:
        if detector.compares_clients:
            loaded.add(ScannerState.objects.filter(model=model, detector=detector.name,
                                                   seen_at__gte=latest - detector.state_horizon_seconds)
                       .values_list("detector", "client_id", "data"))
    return loaded


def save_state(model: RegisteredModel, detectors: Sequence[Detector], new_state: Mapping[str, Mapping[str, Any]],
               last_seen: Mapping[str, float], loaded: LoadedState) -> None:
    """Write the rows of the chunk's clients (`last_seen`); a client left with no entry loses its row."""
    upserts: list[tuple[str, str, bytes, float]] = []
    gone: list[tuple[str, str]] = []
    for detector in detectors:
        sections = new_state.get(detector.name) or {}
        for client, seen in last_seen.items():
            data = {section: entries[client] for section, entries in sections.items() if client in entries}
            if data:
                upserts.append((detector.name, client, orjson.dumps(data), seen))
            elif (detector.name, client) in loaded.rows:
                gone.append((detector.name, client))
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
    """One statement each: an upsert from arrays, a delete from arrays (no per-row SQL to build)."""
    with connection.cursor() as cursor:
        if upserts:
            detectors, clients, data, seen = (list(column) for column in zip(*upserts, strict=True))
            cursor.execute(
                f"INSERT INTO {TABLE} (model_id, detector, client_id, data, seen_at) "  # noqa: S608  # nosec B608
                "SELECT %s, d, c, b, s FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::float8[]) AS u(d, c, b, s) "
                "ON CONFLICT (model_id, detector, client_id) DO UPDATE SET data = EXCLUDED.data, seen_at = EXCLUDED.seen_at",
                [model.pk, detectors, clients, data, seen])
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
