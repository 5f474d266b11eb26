"""Validate a batch of logged queries completely before anything is written: any bad row rejects the whole
batch, and every problem is named by row index and field (the ingestion API and the predict gateway share it)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import overload

import numpy as np
from django.utils import timezone

from monitor.models import CLIENT_ID_MAX_LENGTH, RegisteredModel
from monitor.platform.feature_schema import CATEGORICAL, MAX_CATEGORY_LENGTH, FeatureSchema

MAX_ID_LENGTH = CLIENT_ID_MAX_LENGTH  # client ids and request ids alike
FLOAT32_MAX = float(np.finfo(np.float32).max)
FUTURE_TOLERANCE = timedelta(minutes=5)
OLDEST_ACCEPTED = timedelta(days=400)


class IngestRefusal(StrEnum):
    """Why a batch or a predict request was refused, in the domain's words: each interface (the API's HTTP status,
    a command's message) decides what that means for its caller."""

    INVALID = "invalid"  # a row or field is wrong: the request must change
    TOO_LARGE = "too_large"  # more rows than one request may carry: send them in smaller requests
    NO_ARTIFACT = "no_artifact"  # the model has no artifact for its current version: nothing can predict
    MODEL_GONE = "model_gone"  # the model was deleted before the batch could be stored


class IngestError(ValueError):
    def __init__(self, message: str, details: list[dict] | None = None, *,
                 refusal: IngestRefusal = IngestRefusal.INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.refusal = refusal


UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


class EpochTimes(Sequence[datetime]):
    """Rows' times as aware UTC datetimes, made from int64 epoch microseconds only when first read: storing a batch on
    PostgreSQL needs the microseconds alone (the datetimes cost a fifth of the checks of a batch)."""

    def __init__(self, micros: np.ndarray) -> None:
        self._micros = micros
        self._made: list[datetime] | None = None

    def _all(self) -> list[datetime]:
        if self._made is None:
            self._made = [UNIX_EPOCH + timedelta(microseconds=us) for us in self._micros.tolist()]
        return self._made

    def __len__(self) -> int:
        return len(self._micros)

    @overload
    def __getitem__(self, index: int) -> datetime: ...

    @overload
    def __getitem__(self, index: slice) -> list[datetime]: ...

    def __getitem__(self, index: int | slice) -> datetime | list[datetime]:
        return self._all()[index]


@dataclass
class QueryBatch:
    client_ids: list[str]
    timestamps: Sequence[datetime]
    features: np.ndarray  # float32 (n, d)
    outputs: np.ndarray  # float32 (n, k)
    request_ids: list[str | None]
    server_stamped: int = 0  # rows sent without a ts, stamped with the time they arrived
    epoch_micros: np.ndarray | None = None  # int64 microseconds since the Unix epoch, when the parser had them
    # (row, feature, category) of each category training never saw: its code is given when the batch is stored
    # (monitor.ingestion.store: -id of its UnseenCategory row); NaN in `features` until then.
    unseen_cells: list[tuple[int, int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.client_ids)

    @property
    def micros(self) -> np.ndarray:
        """Each row's time as int64 microseconds since the Unix epoch."""
        if self.epoch_micros is None:
            self.epoch_micros = np.fromiter(((ts - UNIX_EPOCH) // ONE_MICROSECOND for ts in self.timestamps),
                                            dtype=np.int64, count=len(self.timestamps))
        return self.epoch_micros

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
        if type(item) is int and abs(item) > FLOAT32_MAX:
            return f"{what}[{position}] is out of float32 range"
        if not math.isfinite(item):
            return f"{what}[{position}] is {item}; NaN and infinity are not allowed"
        if unit_interval and not 0.0 <= item <= 1.0:
            return f"{what}[{position}] is {item}; probabilities must lie in [0, 1]"
    return None


def feature_values(value: object, schema: FeatureSchema) -> tuple[list[object] | None, list[tuple[str, str]]]:
    """A query's features as raw values in the schema's order: a list in that order, or an object {name: value}
    (a name left out is missing). Values are numbers, category strings or null. Returns (values or None, problems
    as (field, message): field "features" for the list form, "features.<name>" for the object form)."""
    n = len(schema)
    if isinstance(value, dict):
        known = set(schema.names)
        problems = [(f"features.{str(name)[:64]}", f"unknown feature; the model's features are {schema.names}"[:300])
                    for name in value if name not in known]
        values = [value.get(name) for name in schema.names]
        places = [(f"features.{name}", f"features.{name}") for name in schema.names]
    elif isinstance(value, list):
        if len(value) != n:
            return None, [("features", f"features has {len(value)} values; the model has {n}")]
        problems, values, places = [], list(value), [("features", f"features[{i}]") for i in range(n)]
    else:
        return None, [("features", f"features must be a list of {n} values in the model's order, or an object "
                                   "{name: value}")]
    for index, item in enumerate(values):
        problem = schema.value_problem(index, item)
        if problem:
            where, place = places[index]
            problems.append((where, f"{place} {problem}"))
    return (None if problems else values), problems


def parse_timestamp(value: object, *, now: datetime) -> datetime:
    """ISO 8601 with a timezone, or seconds since the epoch; not in the future, not ancient."""
    if is_number(value):
        if type(value) is int and abs(value) > FLOAT32_MAX:  # math.isfinite cannot take an integer past float64
            raise ValueError("is out of range: seconds since the epoch, a number below 10^38")
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
                          [{"field": "queries", "message": f"at most {max_queries} queries"}],
                          refusal=IngestRefusal.TOO_LARGE)
    n_classes = len(model.class_labels)
    schema = model.schema
    fast = _validate_fast(rows, schema=schema, n_classes=n_classes, now=now)
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
        values, problems = feature_values(row.get("features"), schema)
        for where, problem in problems:
            details.append({"index": index, "field": where, "message": problem})
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
        features.append(values)
        outputs.append(row["output"])
    if details:
        raise IngestError(f"{len(details)} problem(s) in the batch; nothing was stored", details)
    server_stamped = sum(1 for row in rows if row.get("ts") is None)
    return QueryBatch(
        client_ids=client_ids, timestamps=timestamps, request_ids=request_ids,
        features=schema.encode(features).astype(np.float32), outputs=np.asarray(outputs, dtype=np.float32),
        server_stamped=server_stamped, unseen_cells=unseen_cells(features, schema),
    )


def unseen_cells(rows: list, schema: FeatureSchema) -> list[tuple[int, int, str]]:
    """Where `rows` (raw values) carry a category training never saw: (row, feature, category)."""
    cells = []
    for index in schema.categorical:
        for row_index, row in enumerate(rows):
            value = row[index]
            if value is not None and schema.code(index, schema.category_text(value)) is None:
                cells.append((row_index, index, schema.category_text(value)))
    return cells


_NUMBER_TYPES = frozenset({int, float})
COLUMNS_REQUIRED = ("client_id", "features", "output")
COLUMNS_ALL = (*COLUMNS_REQUIRED, "ts", "request_id")
_ABSENT = object()  # a field a row left out, told apart from one it sent as null


def _validate_fast(rows: list, *, schema: FeatureSchema, n_classes: int, now: datetime) -> QueryBatch | None:
    """The common case: the rows turned into columns and checked as the columnar form is. None sends the batch
    to the row-by-row path, which finds and names every problem."""
    if set(map(type, rows)) != {dict}:
        return None
    try:  # every required field in every row
        columns = {name: list(map(itemgetter(name), rows)) for name in COLUMNS_REQUIRED}
    except KeyError:
        return None
    present = 0
    for name in COLUMNS_ALL[len(COLUMNS_REQUIRED):]:
        values = [row.get(name, _ABSENT) for row in rows]
        absent = values.count(_ABSENT)
        present += len(rows) - absent
        columns[name] = [None if value is _ABSENT else value for value in values] if absent else values
    if sum(map(len, rows)) != len(COLUMNS_REQUIRED) * len(rows) + present:  # a field of no known name
        return None
    return _columns_fast(columns, n=len(rows), schema=schema, n_classes=n_classes, now=now)


def _fast_timestamps(raw: list, now: datetime) -> tuple[Sequence[datetime], np.ndarray | None] | None:
    """Every row's time: `now` where none was sent; epoch seconds checked as one array (returned as microseconds
    too). None when a value needs the row-by-row path (ISO strings are parsed one by one; a bad value is named
    there)."""
    now_micros = (now - UNIX_EPOCH) // ONE_MICROSECOND
    if all(value is None for value in raw):
        return [now] * len(raw), np.full(len(raw), now_micros, dtype=np.int64)
    if any(type(value) not in _NUMBER_TYPES for value in raw if value is not None):
        try:
            return [now if value is None else parse_timestamp(value, now=now) for value in raw], None
        except ValueError:
            return None
    try:
        seconds = np.array([now.timestamp() if value is None else value for value in raw], dtype=np.float64)
    except OverflowError:  # an integer past float64: the row-by-row path names it
        return None
    if not np.isfinite(seconds).all() or (seconds > (now + FUTURE_TOLERANCE).timestamp()).any() \
            or (seconds < (now - OLDEST_ACCEPTED).timestamp()).any():
        return None
    micros = np.round(seconds * 1e6).astype(np.int64)
    sent = [value is not None for value in raw]
    micros = np.where(sent, micros, now_micros)
    return EpochTimes(micros), micros


def validate_columns(columns: object, *, model: RegisteredModel, max_queries: int,
                     now: datetime | None = None) -> QueryBatch:
    """The columnar body {"columns": {"client_id": [...], "features": [[...], ...], "output": [[...], ...],
    "ts": [...], "request_id": [...]}}: one list per field, row i across them. Checked a column at a time;
    anything the column checks refuse is handed to the row-by-row validator, which names each row and field."""
    now = now or timezone.now()
    if not isinstance(columns, dict):
        raise IngestError('"columns" must be an object of lists', [{"field": "columns", "message": "must be an object"}])
    unknown = sorted(set(columns) - set(COLUMNS_ALL))
    missing = [name for name in COLUMNS_REQUIRED if name not in columns]
    not_lists = [name for name in COLUMNS_ALL if name in columns and not isinstance(columns[name], list)]
    if unknown or missing or not_lists:
        raise IngestError("the columns are not usable; nothing was stored", [
            *({"field": f"columns.{name}"[:80], "message": f"unknown column; expected {list(COLUMNS_ALL)}"} for name in unknown),
            *({"field": f"columns.{name}", "message": "missing"} for name in missing),
            *({"field": f"columns.{name}", "message": "must be a list, one value per query"} for name in not_lists)])
    lengths = {name: len(columns[name]) for name in COLUMNS_ALL if name in columns}
    n = lengths["client_id"]
    if len(set(lengths.values())) > 1:
        raise IngestError("the columns have different lengths; nothing was stored",
                          [{"field": f"columns.{name}", "message": f"{length} values"} for name, length in lengths.items()])
    if n > max_queries:
        raise IngestError(f"the batch has {n:,} queries; at most {max_queries:,} per request",
                          [{"field": "columns", "message": f"at most {max_queries} queries"}],
                          refusal=IngestRefusal.TOO_LARGE)
    fast = _columns_fast(columns, n=n, schema=model.schema, n_classes=len(model.class_labels), now=now)
    if fast is not None:
        return fast
    rows = [{name: columns[name][i] for name in columns} for i in range(n)]
    return validate_queries(rows, model=model, max_queries=max_queries, now=now)


def _numbers(matrix: list, width: int) -> np.ndarray | None:
    """A list of equal-length lists of JSON numbers (no booleans) as float64, else None."""
    if not set(map(type, matrix)) <= {list} or set(map(len, matrix)) - {width}:
        return None
    if not set(map(type, itertools.chain.from_iterable(matrix))) <= _NUMBER_TYPES:
        return None
    try:  # fromiter over the flattened values: a third faster than asarray over the rows
        return np.fromiter(itertools.chain.from_iterable(matrix), dtype=np.float64,
                           count=len(matrix) * width).reshape(len(matrix), width)
    except (OverflowError, ValueError):  # an integer past float64: the row-by-row path names it
        return None


def _features(matrix: list, schema: FeatureSchema) -> tuple[np.ndarray, list[tuple[int, int, str]]] | None:
    """Every query's features as lists in the schema's order, coded as `schema.encode` codes them (NaN for a missing
    value and for a category training never saw), with the unseen categories' cells; checked a feature at a time.
    None sends the batch to the row-by-row path: anything `schema.value_problem` would refuse, and what it accepts
    but is rare (the object form, a category sent as a number)."""
    width = len(schema)
    if schema.is_plain:
        features = _numbers(matrix, width)
        if features is None or not np.isfinite(features).all() or (np.abs(features) > FLOAT32_MAX).any():
            return None
        return features, []
    if not matrix or not set(map(type, matrix)) <= {list} or set(map(len, matrix)) - {width}:
        return None
    coded = np.empty((len(matrix), width), dtype=np.float64)
    cells: list[tuple[int, int, str]] = []
    for index, (feature, column) in enumerate(zip(schema.features, zip(*matrix, strict=True), strict=True)):
        missing = column.count(None)
        if missing and not feature.missing_accepted:
            return None
        present = [value for value in column if value is not None] if missing else column
        if feature.kind == CATEGORICAL:
            if not set(map(type, present)) <= {str}:
                return None
            if present:
                lengths = list(map(len, present))
                if min(lengths) == 0 or max(lengths) > MAX_CATEGORY_LENGTH or not "".join(present).isprintable():
                    return None
            codes = schema.codes(index)
            values = np.fromiter((codes.get(value, math.nan) for value in column), dtype=np.float64, count=len(column))
            cells.extend((row, index, column[row]) for row in np.flatnonzero(np.isnan(values)).tolist()
                         if column[row] is not None)
        else:
            if not set(map(type, present)) <= _NUMBER_TYPES:
                return None
            try:  # None is read as NaN
                values = np.array(column, dtype=np.float64)
            except OverflowError:  # an integer past float64: the row-by-row path names it
                return None
            # NaN only where null was sent (a NaN the fallback parser read is refused), no infinity, float32 range.
            if int(np.isnan(values).sum()) != missing or np.isinf(values).any() \
                    or (np.abs(np.nan_to_num(values)) > FLOAT32_MAX).any():
                return None
        coded[:, index] = values
    return coded, cells


def _identifiers(values: list, *, required: bool) -> bool:
    """Every value a non-empty printable string of at most MAX_ID_LENGTH characters, not only spaces (or None where
    not `required`). Checked a whole column per call: a concatenation is printable exactly when each part is."""
    allowed = {str} if required else {str, type(None)}
    if not set(map(type, values)) <= allowed:
        return False
    texts = [value for value in values if value is not None] if not required else values
    if not texts:
        return True
    lengths = list(map(len, texts))
    return (min(lengths) > 0 and max(lengths) <= MAX_ID_LENGTH and "".join(texts).isprintable()
            and not any(map(str.isspace, texts)))


def _columns_fast(columns: dict, *, n: int, schema: FeatureSchema, n_classes: int, now: datetime) -> QueryBatch | None:
    if n == 0 or not _identifiers(columns["client_id"], required=True):
        return None
    request_ids = columns.get("request_id") or [None] * n
    if not _identifiers(request_ids, required=False):
        return None
    coded = _features(columns["features"], schema)
    outputs = _numbers(columns["output"], n_classes)
    if coded is None or outputs is None:
        return None
    features, cells = coded
    if not np.isfinite(outputs).all() or (outputs < 0).any() or (outputs > 1).any():
        return None
    raw_ts = columns.get("ts") or [None] * n
    stamped = _fast_timestamps(raw_ts, now)
    if stamped is None:
        return None
    timestamps, micros = stamped
    return QueryBatch(client_ids=list(columns["client_id"]), timestamps=timestamps, request_ids=list(request_ids),
                      features=features.astype(np.float32), outputs=outputs.astype(np.float32),
                      server_stamped=raw_ts.count(None), epoch_micros=micros, unseen_cells=cells)
