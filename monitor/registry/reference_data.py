"""Reference data (members, non-members, population): CSV validation and encryption at rest.

Member records are the most sensitive data we hold: they are parsed in memory, encrypted with
Fernet (DATA_ENCRYPTION_KEYS) and only ever decrypted in memory by the code that needs them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.conf import settings

from monitor.models.reference_arrays import DatasetError, ReferenceArrays
from monitor.platform.feature_schema import CATEGORICAL, FeatureSchema

MAX_DETAILS = 20
# What a file that is not CSV text usually is. The CSV path never decompresses anything, so a compressed
# upload (or a compression bomb) is refused from its first bytes.
NOT_CSV_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "a ZIP archive (or an Excel workbook)"),
    (b"PK\x05\x06", "a ZIP archive (or an Excel workbook)"), (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook"),
)


@dataclass(frozen=True)
class ParsedCsv:
    arrays: ReferenceArrays
    sha256: str
    feature_names: list[str]
    labels_seen: list[str]


@dataclass(frozen=True)
class RawCsv:
    """A reference CSV whose header was checked: every cell still the text it was (stripped)."""

    frame: pd.DataFrame
    sha256: str
    feature_names: list[str]
    labels: pd.Series
    record_ids: np.ndarray

    @property
    def labels_seen(self) -> list[str]:
        return sorted(self.labels.unique().tolist())

    def cells(self, name: str) -> pd.Series:
        return self.frame[name].str.strip()


def parse_reference_csv(
    raw: bytes,
    *,
    label_column: str,
    feature_names: list[str] | None,
    class_labels: list[str] | None,
    id_column: str | None = None,
    expected_n_features: int | None = None,
    max_bytes: int | None = None,
    schema: FeatureSchema | None = None,
) -> ParsedCsv:
    """Validate a reference CSV against the model's features and classes.

    Rows are numbered from 1 for the first data row (the header is not counted).
    `feature_names=None` takes the features from this file's header (first upload).
    `class_labels=None` accepts any label (an endpoint model whose classes come from the data).
    `schema` says each feature's kind and whether it may be empty; without one every feature is a number.
    """
    read = read_reference_csv(raw, label_column=label_column, feature_names=feature_names, id_column=id_column,
                              expected_n_features=expected_n_features, max_bytes=max_bytes)
    return encode_reference(read, schema=schema or FeatureSchema.numeric(read.feature_names),
                            label_column=label_column, class_labels=class_labels)


def read_reference_csv(
    raw: bytes,
    *,
    label_column: str,
    feature_names: list[str] | None,
    id_column: str | None = None,
    expected_n_features: int | None = None,
    max_bytes: int | None = None,
) -> RawCsv:
    """The file's text, header, label and id columns checked; cells are checked against a schema later."""
    limit = max_bytes or settings.DATASET_MAX_BYTES
    if len(raw) > limit:
        raise DatasetError(f"the file is {len(raw):,} bytes; the limit is {limit:,} bytes"
                           + ("" if max_bytes else " (DATASET_MAX_BYTES)"))
    if not raw.strip():
        raise DatasetError("the file is empty")
    _refuse_non_text(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)") from exc
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"the file is not valid CSV: {exc}") from exc
    # pandas renames a repeated name ("age", "age.1"), so repeats are looked for in the header as written.
    header = [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DatasetError("duplicate column names", [{"column": c, "message": "appears more than once"} for c in duplicated])
    frame.columns = [str(column).strip() for column in frame.columns]
    if frame.empty:
        raise DatasetError("the file has a header but no data rows")
    if label_column not in frame.columns:
        raise DatasetError(f"the label column {label_column!r} is missing", [{"column": label_column, "message": "missing"}])
    if id_column is not None and id_column not in frame.columns:
        raise DatasetError(f"the id column {id_column!r} is missing", [{"column": id_column, "message": "missing"}])

    non_features = {label_column} | ({id_column} if id_column else set())
    present = [c for c in frame.columns if c not in non_features]
    if feature_names is None:
        feature_names = present
        if not feature_names:
            raise DatasetError("the file has no feature columns besides the label")
        if expected_n_features is not None and len(present) != expected_n_features:
            raise DatasetError(
                f"the file has {len(present)} feature columns; the model takes {expected_n_features}",
                [{"column": ", ".join(present), "message": "the feature columns found (label and id columns excluded)"}],
            )
    missing = [c for c in feature_names if c not in frame.columns]
    extra = [c for c in present if c not in feature_names]
    if missing or extra:
        details = [{"column": c, "message": "missing (the model expects it)"} for c in missing]
        details += [{"column": c, "message": "unexpected (not a feature of the model)"} for c in extra]
        raise DatasetError("the columns do not match the model's features", details)
    if id_column:
        record_ids = frame[id_column].str.strip().to_numpy(dtype=str)
        _check_ids(record_ids, id_column)
    else:
        record_ids = np.array([str(i) for i in range(1, len(frame) + 1)])
    return RawCsv(frame=frame, sha256=hashlib.sha256(raw).hexdigest(), feature_names=list(feature_names),
                  labels=frame[label_column].str.strip(), record_ids=record_ids)


def number_cells(cells: pd.Series) -> np.ndarray:
    """A column's cells as float64: NaN where a cell is empty or not a finite number."""
    values = np.array(pd.to_numeric(cells, errors="coerce"), dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return values


def encode_reference(read: RawCsv, *, schema: FeatureSchema, label_column: str,
                     class_labels: list[str] | None) -> ParsedCsv:
    """Every cell checked against the schema (a number for a numeric feature, any text for a categorical one,
    empty only where the model takes missing values), then coded as the log codes queries."""
    details: list[dict] = []
    n_problems = 0

    def problem(row: int, column: str, message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if len(details) < MAX_DETAILS:
            details.append({"row": row + 1, "column": column, "message": message})

    columns = []
    for index, feature in enumerate(schema.features):
        cells = read.cells(feature.name)
        empty = (cells == "").to_numpy()
        if not feature.missing_accepted:
            for row in np.flatnonzero(empty):
                problem(int(row), feature.name, "empty cell (the model does not accept missing values here)"
                        if not schema.is_plain else "empty cell (missing values are not allowed)")
        if feature.kind == CATEGORICAL:
            codes = np.full(len(cells), np.nan)
            for row, cell in enumerate(cells.tolist()):
                if cell == "":
                    continue
                code = schema.code(index, cell)
                if code is None:
                    problem(row, feature.name, f"{_excerpt(cell)} is not one of the categories of {feature.name!r}")
                else:
                    codes[row] = code
            columns.append(codes)
            continue
        values = np.array(pd.to_numeric(cells, errors="coerce"), dtype=np.float64)
        for row in np.flatnonzero(~np.isfinite(values) & ~empty):
            cell = cells.iat[row]
            if cell.lower() in {"nan", "-nan", "+nan", "inf", "+inf", "-inf", "infinity", "-infinity"} or _overflows(cell):
                problem(int(row), feature.name, f"{cell!r} is not a finite number")
            else:
                problem(int(row), feature.name, f"{_excerpt(cell)} is not a number")
        values[empty] = np.nan
        columns.append(values)

    labels = read.labels
    if class_labels is not None:
        index_of = {label: i for i, label in enumerate(class_labels)}
        for row in np.flatnonzero((~labels.isin(index_of)).to_numpy()):
            problem(int(row), label_column,
                    f"{_excerpt(labels.iat[row])} is not one of the model's classes {class_labels}")
    else:
        for row in np.flatnonzero((labels == "").to_numpy()):
            problem(int(row), label_column, "empty label")
    if n_problems:
        more = f" (the first {MAX_DETAILS} are listed)" if n_problems > MAX_DETAILS else ""
        raise DatasetError(f"{n_problems} invalid cell(s){more}", details)

    labels_seen = read.labels_seen
    mapping = {label: i for i, label in enumerate(class_labels if class_labels is not None else labels_seen)}
    arrays = ReferenceArrays(
        X=np.column_stack(columns),
        y=labels.map(mapping).to_numpy(dtype=np.int64),
        record_ids=read.record_ids,
    )
    return ParsedCsv(arrays=arrays, sha256=read.sha256, feature_names=list(read.feature_names),
                     labels_seen=labels_seen)


def _refuse_non_text(raw: bytes) -> None:
    for signature, what in NOT_CSV_SIGNATURES:
        if raw.startswith(signature):
            raise DatasetError(f"the file is {what}, not CSV text; upload the plain .csv file")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError("the file is UTF-16 text; save it as UTF-8 CSV")
    if b"\x00" in raw:  # also keeps NUL out of labels, which PostgreSQL's jsonb cannot store
        raise DatasetError("the file is binary (it contains NUL bytes), not CSV text")


def _overflows(cell: str) -> bool:
    """A number too large for a float ('1e999'): a number, but not a finite one."""
    try:
        return not math.isfinite(float(cell))
    except ValueError:
        return False


def _check_ids(record_ids: np.ndarray, id_column: str) -> None:
    first_row: dict[str, int] = {}
    details: list[dict] = []
    n_problems = 0
    for row, record_id in enumerate(record_ids.tolist(), start=1):
        if record_id == "":
            message = "empty id"
        elif record_id in first_row:
            message = f"{_excerpt(record_id)} repeats the id of row {first_row[record_id]}"
        else:
            first_row[record_id] = row
            continue
        n_problems += 1
        if len(details) < MAX_DETAILS:
            details.append({"row": row, "column": id_column, "message": message})
    if n_problems:
        more = f" (the first {MAX_DETAILS} are listed)" if n_problems > MAX_DETAILS else ""
        raise DatasetError(f"{n_problems} invalid record id(s) in column {id_column!r}{more}", details)


def _excerpt(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")
