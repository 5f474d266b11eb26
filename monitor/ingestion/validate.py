"""Validate a batch of logged queries completely before anything is written: any bad row rejects the whole
batch, and every problem is named by row index and field (the ingestion API and the predict gateway share it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.utils import timezone

from monitor.models import RegisteredModel

MAX_ID_LENGTH = 128
FUTURE_TOLERANCE = timedelta(minutes=5)
OLDEST_ACCEPTED = timedelta(days=400)


class IngestError(ValueError):
    def __init__(self, message: str, details: list[dict] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.status = status


@dataclass
class QueryBatch:
    client_ids: list[str]
    timestamps: list[datetime]
    features: np.ndarray  # float32 (n, d)
    outputs: np.ndarray  # float32 (n, k)
    request_ids: list[str | None]
    details: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.client_ids)

    @property
    def labels(self) -> np.ndarray:
        return self.outputs.argmax(axis=1).astype(np.int16)

    @property
    def confidences(self) -> np.ndarray:
        return self.outputs.max(axis=1).astype(np.float64)


def is_number(value: object) -> bool:
    return type(value) in (int, float)


def vector_problem(value: object, *, length: int, what: str, unit_interval: bool) -> str | None:
    if not isinstance(value, list):
        return f"{what} must be a list of {length} numbers"
    if len(value) != length:
        return f"{what} has {len(value)} values; the model has {length}"
    for position, item in enumerate(value):
        if not is_number(item):
            return f"{what}[{position}] is {type(item).__name__} {item!r:.40}, not a number"
        if not math.isfinite(item):
            return f"{what}[{position}] is {item}; NaN and infinity are not allowed"
        if unit_interval and not 0.0 <= item <= 1.0:
            return f"{what}[{position}] is {item}; probabilities must lie in [0, 1]"
    return None


def parse_timestamp(value: object, *, now: datetime) -> datetime:
    """ISO 8601 with a timezone, or seconds since the epoch; not in the future, not ancient."""
    if is_number(value):
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds since the epoch")
        try:
            ts = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"{value} seconds since the epoch is out of range") from exc
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r:.60} is not an ISO 8601 timestamp") from exc
        if ts.tzinfo is None:
            raise ValueError(f"{value!r:.60} has no timezone; add Z or an offset such as +00:00")
    else:
        raise ValueError("must be an ISO 8601 string or seconds since the epoch")
    if ts > now + FUTURE_TOLERANCE:
        raise ValueError(f"{ts.isoformat()} is in the future")
    if ts < now - OLDEST_ACCEPTED:
        raise ValueError(f"{ts.isoformat()} is more than {OLDEST_ACCEPTED.days} days old")
    return ts.astimezone(UTC)


def identifier_problem(value: object, what: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        return f"{what} must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is {len(value)} characters; at most {MAX_ID_LENGTH}"
    if not value.isprintable():
        return f"{what} contains control characters"
    return None


def validate_queries(rows: object, *, model: RegisteredModel, max_queries: int, now: datetime | None = None) -> QueryBatch:
    """Check every row of an ingestion batch; raise IngestError listing each bad row and field."""
    now = now or timezone.now()
    if not isinstance(rows, list):
        raise IngestError('the body must be {"queries": [...]} or NDJSON, one query object per line',
                          [{"field": "queries", "message": "must be a list"}])
    if not rows:
        raise IngestError("the batch is empty", [{"field": "queries", "message": "at least one query is needed"}])
    if len(rows) > max_queries:
        raise IngestError(f"the batch has {len(rows):,} queries; at most {max_queries:,} per request",
                          [{"field": "queries", "message": f"at most {max_queries} queries"}], status=413)
    n_features, n_classes = model.n_features, len(model.class_labels)
    fast = _validate_fast(rows, n_features=n_features, n_classes=n_classes, now=now)
    if fast is not None:
        return fast
    details: list[dict] = []
    client_ids, timestamps, request_ids, features, outputs = [], [], [], [], []
    allowed = {"client_id", "features", "output", "ts", "request_id"}
    for index, row in enumerate(rows):
        if len(details) >= 50:
            break
        if not isinstance(row, dict):
            details.append({"index": index, "field": None, "message": "each query must be a JSON object"})
            continue
        for key in row.keys() - allowed:
            details.append({"index": index, "field": str(key)[:64], "message": f"unknown field; expected {sorted(allowed)}"})
        problem = identifier_problem(row.get("client_id"), "client_id", required=True)
        if problem:
            details.append({"index": index, "field": "client_id", "message": problem})
        problem = vector_problem(row.get("features"), length=n_features, what="features", unit_interval=False)
        if problem:
            details.append({"index": index, "field": "features", "message": problem})
        problem = vector_problem(row.get("output"), length=n_classes, what="output", unit_interval=True)
        if problem:
            details.append({"index": index, "field": "output", "message": problem})
        problem = identifier_problem(row.get("request_id"), "request_id", required=False)
        if problem:
            details.append({"index": index, "field": "request_id", "message": problem})
        ts = now
        if row.get("ts") is not None:
            try:
                ts = parse_timestamp(row["ts"], now=now)
            except ValueError as exc:
                details.append({"index": index, "field": "ts", "message": str(exc)})
        if details:
            continue
        client_ids.append(row["client_id"])
        timestamps.append(ts)
        request_ids.append(row.get("request_id"))
        features.append(row["features"])
        outputs.append(row["output"])
    if details:
        raise IngestError(f"{len(details)} problem(s) in the batch; nothing was stored", details)
    feature_array = np.asarray(features, dtype=np.float64)
    too_big = np.abs(feature_array) > np.finfo(np.float32).max
    if too_big.any():
        index, position = map(int, np.argwhere(too_big)[0])
        raise IngestError("a feature does not fit in float32; nothing was stored",
                          [{"index": index, "field": "features", "message": f"features[{position}] is out of float32 range"}])
    return QueryBatch(
        client_ids=client_ids, timestamps=timestamps, request_ids=request_ids,
        features=feature_array.astype(np.float32), outputs=np.asarray(outputs, dtype=np.float32),
    )


_ROW_KEYS = frozenset({"client_id", "features", "output"})
_ROW_KEYS_ALL = frozenset({"client_id", "features", "output", "ts", "request_id"})
_NUMBER_TYPES = frozenset({int, float})


def _validate_fast(rows: list, *, n_features: int, n_classes: int, now: datetime) -> QueryBatch | None:
    """The common case, checked with C-level loops and numpy; None sends the batch to the
    row-by-row path, which finds and names every problem."""
    client_ids, timestamps, request_ids, features, outputs = [], [], [], [], []
    number = _NUMBER_TYPES.__contains__
    for row in rows:
        if type(row) is not dict or not _ROW_KEYS <= row.keys() <= _ROW_KEYS_ALL:
            return None
        client_id, vector, output = row["client_id"], row["features"], row["output"]
        request_id = row.get("request_id")
        if (type(client_id) is not str or not 0 < len(client_id) <= MAX_ID_LENGTH or not client_id.isprintable()
                or not client_id.strip()):
            return None
        if request_id is not None and (type(request_id) is not str or not 0 < len(request_id) <= MAX_ID_LENGTH
                                       or not request_id.isprintable() or not request_id.strip()):
            return None
        if (type(vector) is not list or len(vector) != n_features or not all(map(number, map(type, vector)))
                or type(output) is not list or len(output) != n_classes or not all(map(number, map(type, output)))):
            return None
        ts = row.get("ts")
        if ts is None:
            ts = now
        else:
            try:
                ts = parse_timestamp(ts, now=now)
            except ValueError:
                return None
        client_ids.append(client_id)
        timestamps.append(ts)
        request_ids.append(request_id)
        features.append(vector)
        outputs.append(output)
    feature_array = np.asarray(features, dtype=np.float64)
    output_array = np.asarray(outputs, dtype=np.float64)
    if (not np.isfinite(feature_array).all() or (np.abs(feature_array) > np.finfo(np.float32).max).any()
            or not np.isfinite(output_array).all() or (output_array < 0).any() or (output_array > 1).any()):
        return None
    return QueryBatch(client_ids=client_ids, timestamps=timestamps, request_ids=request_ids,
                      features=feature_array.astype(np.float32), outputs=output_array.astype(np.float32))
