"""The space the detectors see a model's queries in: its coded rows (monitor.platform.feature_schema) made into
finite numbers that respect each feature's kind. The detectors measure in σ cells of each column, so:

- a number stays itself; where the registration data has missing values, a missing number becomes 0 with a column
  of its own saying it was missing (1) or not (0), so "missing" is a value of its own, equal only to itself (a
  model that merely answers a missing value it was never trained with — most forests do — gets no such column:
  a missing number there counts as 0, and its numeric space stays the one it always had);
- a category becomes one column per training category (1 where the row has it), and one for any category training
  never saw: two rows with the same category are equal there, two with different ones differ by at least one
  column's whole spread — categories are equal or not, never "near";
- a model of numbers only, without missing values in its data, is seen as it always was.

Pure: numpy and the schema only, the same on both databases and on every worker.
"""
from __future__ import annotations

import numpy as np

from monitor.platform.feature_schema import CATEGORICAL, FeatureSchema

MAX_ONE_HOT = 64  # categories past the first 64 of a feature share its "other" column with the unseen ones


def is_identity(schema: FeatureSchema) -> bool:
    return not schema.categorical and not any(feature.missing_seen for feature in schema.features)


def detection_features(X: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Coded rows (n, d) as the detectors' float32 (n, width(schema))."""
    if is_identity(schema):
        missing = np.isnan(X)
        return np.where(missing, 0.0, X).astype(X.dtype) if missing.any() else X
    X = np.asarray(X, dtype=np.float64).reshape(-1, len(schema))
    columns: list[np.ndarray] = []
    for index, feature in enumerate(schema.features):
        column = X[:, index]
        missing = np.isnan(column)
        if feature.kind == CATEGORICAL:
            kept = min(len(feature.categories), MAX_ONE_HOT)
            codes = np.where(missing, -1, column).astype(np.int64)
            for code in range(kept):
                columns.append((codes == code).astype(np.float32))
            columns.append(((~missing) & ((codes < 0) | (codes >= kept))).astype(np.float32))
        else:
            columns.append(np.where(missing, 0.0, column).astype(np.float32))
        if feature.missing_seen:
            columns.append(missing.astype(np.float32))
    return np.column_stack(columns) if columns else np.empty((len(X), 0), dtype=np.float32)


def width(schema: FeatureSchema) -> int:
    if is_identity(schema):
        return len(schema)
    total = 0
    for feature in schema.features:
        total += min(len(feature.categories), MAX_ONE_HOT) + 1 if feature.kind == CATEGORICAL else 1
        total += int(feature.missing_seen)
    return total
