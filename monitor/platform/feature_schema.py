"""A model's features as its users name them (PURE): each feature's name, kind, the categories seen in training, and
whether missing values occur and whether the model takes them. The models store it; everything else reads it.

Internally a row is a float vector, as it always was, so the log, the detectors and the attack core stay numeric:
a number is itself, a category is its code (its index in the feature's training categories; a category never seen
in training gets a negative code, -id of its `UnseenCategory` row, so the raw value is never lost), a missing value
is NaN. `to_frame` turns coded rows back into the raw table a scikit-learn pipeline was trained on; it is a plain
function, so a reference pipeline can start with it (FunctionTransformer) and still be saved with skops.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

NUMERIC, CATEGORICAL = "numeric", "categorical"  # room for "text"
KINDS = (NUMERIC, CATEGORICAL)
MAX_CATEGORY_LENGTH = 200
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A category sent as a number is matched by its text; past int64 it is no code anyone means (its text could be
# longer than a category may be, and an integer of thousands of digits cannot even be turned into text).
MAX_CATEGORY_NUMBER = 2**63


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str = NUMERIC
    categories: tuple[str, ...] = ()  # training categories (the artifact's, then those seen in the uploaded data)
    missing_seen: bool = False  # the uploaded data holds empty cells here
    missing_accepted: bool = False  # the model answered a row with this feature missing
    unseen_accepted: bool = True  # (categorical) the model answered a category it was not trained on

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "kind": self.kind, "missing_seen": self.missing_seen,
                                 "missing_accepted": self.missing_accepted}
        if self.kind == CATEGORICAL:
            entry |= {"categories": list(self.categories), "unseen_accepted": self.unseen_accepted}
        return entry

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Feature:
        return cls(name=str(entry["name"]), kind=str(entry.get("kind", NUMERIC)),
                   categories=tuple(str(c) for c in entry.get("categories", ())),
                   missing_seen=bool(entry.get("missing_seen", False)),
                   missing_accepted=bool(entry.get("missing_accepted", False)),
                   unseen_accepted=bool(entry.get("unseen_accepted", True)))

    def code_of(self, category: str) -> int | None:
        """A training category's code, or None for one never seen in training."""
        try:
            return self.categories.index(category)
        except ValueError:
            return None


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    _codes: dict[int, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def numeric(cls, names: Iterable[str]) -> FeatureSchema:
        return cls(tuple(Feature(name=str(name)) for name in names))

    @classmethod
    def from_list(cls, entries: Sequence[Mapping[str, Any]]) -> FeatureSchema:
        return cls(tuple(Feature.from_dict(entry) for entry in entries))

    def as_list(self) -> list[dict[str, Any]]:
        return [feature.as_dict() for feature in self.features]

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def __len__(self) -> int:
        return len(self.features)

    @property
    def is_plain(self) -> bool:
        """Numbers only and no missing values: the original, fastest path."""
        return all(f.kind == NUMERIC and not f.missing_accepted for f in self.features)

    @property
    def categorical(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind == CATEGORICAL]

    def with_feature(self, index: int, **changes: Any) -> FeatureSchema:
        features = list(self.features)
        features[index] = replace(features[index], **changes)
        return FeatureSchema(tuple(features))

    def codes(self, index: int) -> dict[str, int]:
        """Feature `index`'s training categories and their codes (made once; do not change it)."""
        codes = self._codes.get(index)
        if codes is None:
            codes = self._codes[index] = {c: i for i, c in enumerate(self.features[index].categories)}
        return codes

    def code(self, index: int, category: str) -> int | None:
        return self.codes(index).get(category)

    # -- one value ------------------------------------------------------------------------------------------------

    def value_problem(self, index: int, value: object) -> str | None:
        """Why `value` cannot stand for feature `index` in a query, said after the value's place ("features[2] ...",
        "features.region ..."); None when it can. A category never seen in training is fine here: production sees
        new ones, and they are logged as they are."""
        feature = self.features[index]
        if value is None:
            if not feature.missing_accepted:
                return f"is missing (null); the model does not accept missing values in {feature.name!r}"
            return None
        if feature.kind == CATEGORICAL:
            if isinstance(value, str):
                if not value or len(value) > MAX_CATEGORY_LENGTH or not value.isprintable():
                    return (f"must be a printable category of 1 to {MAX_CATEGORY_LENGTH} characters "
                            f"({feature.name!r} is categorical)")
                return None
            if type(value) is int or (type(value) is float and math.isfinite(value)):  # a code: 3 or 3.0 as "3"
                return None if abs(value) < MAX_CATEGORY_NUMBER else (
                    f"is a number too large for a category; {feature.name!r} is categorical: send a string")
            return f"is {type(value).__name__}; {feature.name!r} is categorical: send a string (or null)"
        if type(value) not in (int, float):
            return f"is {type(value).__name__} {value!r:.40}, not a number ({feature.name!r} is numeric)"
        if type(value) is int and abs(value) > FLOAT32_MAX:
            return "is out of float32 range"
        if not math.isfinite(value):  # type: ignore[arg-type]
            return f"is {value}; NaN and infinity are not allowed (send null for a missing value)"
        if abs(value) > FLOAT32_MAX:  # type: ignore[arg-type]
            return "is out of float32 range"
        return None

    def category_text(self, value: object) -> str:
        """A categorical value as the text it is matched by (3 and 3.0 both as "3")."""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    # -- rows -----------------------------------------------------------------------------------------------------

    def encode(self, rows: Sequence[Sequence[object]],
               unseen_code: Mapping[tuple[int, str], int] | None = None) -> np.ndarray:
        """Checked raw rows (in schema order) as float64 codes; unseen categories take `unseen_code[(feature,
        value)]` (NaN when not given: the caller resolves them, see `unseen_values`)."""
        X = np.full((len(rows), len(self.features)), np.nan, dtype=np.float64)
        categorical = set(self.categorical)
        for r, row in enumerate(rows):
            for i, value in enumerate(row):
                if value is None:
                    continue
                if i in categorical:
                    text = self.category_text(value)
                    code = self.code(i, text)
                    if code is None and unseen_code is not None:
                        code = unseen_code.get((i, text))
                    if code is not None:
                        X[r, i] = code
                else:
                    X[r, i] = float(value)  # type: ignore[arg-type]
        return X

    def unseen_values(self, rows: Sequence[Sequence[object]]) -> dict[tuple[int, str], int]:
        """Every (feature, category) in `rows` that training never saw, with how many rows carry it."""
        found: dict[tuple[int, str], int] = {}
        for i in self.categorical:
            for row in rows:
                value = row[i]
                if value is None:
                    continue
                text = self.category_text(value)
                if self.code(i, text) is None:
                    found[(i, text)] = found.get((i, text), 0) + 1
        return found

    def decode(self, X: np.ndarray, unseen: Mapping[int, str] | None = None) -> list[list[object]]:
        """Coded rows as raw values: numbers, category strings, None for missing. `unseen` maps a negative code's
        id to its value (a code it does not hold is shown as "(unseen category #id)")."""
        X = np.asarray(X, dtype=np.float64)
        categorical = set(self.categorical)
        out: list[list[object]] = []
        for row in X.reshape(-1, len(self.features)).tolist():
            values: list[object] = []
            for i, value in enumerate(row):
                if math.isnan(value):
                    values.append(None)
                elif i in categorical:
                    values.append(self.category_of(i, value, unseen))
                else:
                    values.append(value)
            out.append(values)
        return out

    def category_of(self, index: int, code: float, unseen: Mapping[int, str] | None = None) -> str:
        categories = self.features[index].categories
        if 0 <= code < len(categories):
            return categories[int(code)]
        key = -int(code)
        return (unseen or {}).get(key, f"(unseen category #{key})")

    def raw_frame(self, rows: Sequence[Sequence[object]]) -> Any:
        """Checked raw rows as the table a pipeline was trained on (what `to_frame` gives for coded rows, with a
        category never seen in training kept as its own text)."""
        import pandas as pd

        categorical = set(self.categorical)
        data: dict[str, Any] = {}
        for i, name in enumerate(self.names):
            if i in categorical:
                column = np.full(len(rows), np.nan, dtype=object)
                for r, row in enumerate(rows):
                    if row[i] is not None:
                        column[r] = self.category_text(row[i])
                data[name] = column
            else:
                data[name] = np.array([np.nan if row[i] is None else row[i] for row in rows], dtype=np.float64)
        return pd.DataFrame(data, columns=self.names)

    def frame_spec(self) -> dict[str, Any]:
        """What `to_frame` needs, as plain lists (kept in a reference pipeline's FunctionTransformer)."""
        return {"columns": self.names,
                "categories": [list(f.categories) if f.kind == CATEGORICAL else None for f in self.features]}

    def to_frame(self, X: np.ndarray, unseen: Mapping[int, str] | None = None) -> Any:
        return to_frame(X, unseen=unseen, **self.frame_spec())


def to_frame(X: Any, *, columns: list[str], categories: list[list[str] | None],
             unseen: Mapping[int, str] | None = None) -> Any:
    """Coded rows as the raw table a pipeline was trained on: numbers as float64, categories as strings, missing as
    NaN (what pandas.read_csv gives for an empty cell). A frame passes through (already raw)."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X
    X = np.asarray(X, dtype=np.float64).reshape(-1, len(columns))
    data: dict[str, Any] = {}
    for i, name in enumerate(columns):
        column = X[:, i]
        cats = categories[i]
        if cats is None:
            data[name] = column
            continue
        values = np.full(len(column), np.nan, dtype=object)
        present = ~np.isnan(column)
        codes = column[present].astype(np.int64)
        known = (codes >= 0) & (codes < len(cats))
        texts = np.empty(len(codes), dtype=object)
        if len(cats):
            texts[known] = np.asarray(cats, dtype=object)[codes[known]]
        for j in np.flatnonzero(~known):
            key = -int(codes[j])
            texts[j] = (unseen or {}).get(key, f"(unseen category #{key})")
        values[present] = texts
        data[name] = values
    return pd.DataFrame(data, columns=columns)
