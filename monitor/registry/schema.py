"""A model's feature schema, read at registration from its artifact and its uploaded data: which features are
categories (the artifact's encoders say so; without an encoder, a column whose every cell is text), their training
categories, where the data has empty cells, and — asked of the model itself — where it takes a missing value or a
category it never saw."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from monitor.platform.feature_schema import CATEGORICAL, NUMERIC, Feature, FeatureSchema
from monitor.registry.reference_data import RawCsv, number_cells

log = logging.getLogger(__name__)
ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")
MAX_PROBED_FEATURES = 500


class SchemaError(ValueError):
    """The data cannot be described for this model (`column`, first `row` and what is wrong)."""

    def __init__(self, message: str, details: list[dict]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def encoder_categories(estimator: Any) -> dict[str, list[str]]:
    """Columns an encoder inside `estimator` (a pipeline, a column transformer, nested) treats as categories, with
    the categories it learnt, as text. Columns whose learnt categories are numbers stay numeric."""
    found: dict[str, list[str]] = {}
    _walk(estimator, found, depth=0)
    return found


def _walk(obj: Any, found: dict[str, list[str]], *, depth: int) -> None:
    if depth > 30:
        return
    name = type(obj).__name__
    if name == "Pipeline":
        for _, step in obj.steps:
            _walk(step, found, depth=depth + 1)
    elif name == "ColumnTransformer" and hasattr(obj, "transformers_"):
        columns = list(getattr(obj, "feature_names_in_", []))
        for label, transformer, _ in obj.transformers_:
            indices = getattr(obj, "_transformer_to_input_indices", {}).get(label, [])
            names = [columns[i] for i in indices if i < len(columns)]
            encoder = _encoder_in(transformer, depth=depth + 1)
            if encoder is not None and names:
                for column, categories in zip(names, getattr(encoder, "categories_", []), strict=False):
                    values = [value for value in np.asarray(categories, dtype=object).tolist()
                              if not (isinstance(value, float) and np.isnan(value)) and value is not None]
                    if any(isinstance(value, str) for value in values):
                        found[column] = [str(value) for value in values]
            else:
                _walk(transformer, found, depth=depth + 1)


def _encoder_in(transformer: Any, *, depth: int) -> Any:
    if type(transformer).__name__ in ENCODERS:
        return transformer
    if type(transformer).__name__ == "Pipeline" and depth < 30:
        for _, step in transformer.steps:
            encoder = _encoder_in(step, depth=depth + 1)
            if encoder is not None:
                return encoder
    return None


def infer_schema(reads: list[RawCsv], *, hints: dict[str, list[str]], takes_text: bool) -> FeatureSchema:
    """Kinds and categories from the artifact's `hints` and the uploaded files. A model that cannot take text
    (`takes_text` False: ONNX, boosters, endpoints) has numeric features only; a column of text for it is
    refused here with the first cell."""
    names = reads[0].feature_names
    features = []
    for name in names:
        cells = [read.cells(name) for read in reads]
        missing_seen = any(bool((column == "").any()) for column in cells)
        if name in hints:
            kind, categories = CATEGORICAL, list(hints[name])
        elif takes_text and all(_all_text(column) for column in cells) and any((column != "").any() for column in cells):
            kind, categories = CATEGORICAL, []
        else:
            kind, categories = NUMERIC, []
        if kind == CATEGORICAL:
            if not takes_text:
                raise SchemaError(f"the model takes numbers only; column {name!r} holds categories",
                                  [{"column": name, "message": "categories need a scikit-learn pipeline that encodes "
                                                               "them (skops)"}])
            known = set(categories)
            for column in cells:
                for value in sorted(set(column.tolist()) - known - {""}):
                    categories.append(value)
                    known.add(value)
        features.append(Feature(name=name, kind=kind, categories=tuple(categories), missing_seen=missing_seen,
                                missing_accepted=missing_seen))
    return FeatureSchema(tuple(features))


def _all_text(column: Any) -> bool:
    present = column[column != ""]
    return len(present) > 0 and bool(np.isnan(number_cells(present)).all())


def probe_acceptance(schema: FeatureSchema, predict_proba: Any, row: np.ndarray) -> FeatureSchema:
    """Ask the model, one feature at a time, whether it answers a row with that feature missing, and (for a
    category) with a category it never saw. A model that answers with finite probabilities takes it."""
    if len(schema) > MAX_PROBED_FEATURES:
        return schema
    for index, feature in enumerate(schema.features):
        blank = row.copy()
        blank[index] = np.nan
        accepted = _answers(predict_proba, blank)  # (empty cells it does not take are named with their rows)
        changes: dict[str, Any] = {"missing_accepted": accepted}
        if feature.kind == CATEGORICAL:
            unseen = row.copy()
            unseen[index] = -1.0  # a code no training category has
            changes["unseen_accepted"] = _answers(predict_proba, unseen)
        schema = schema.with_feature(index, **changes)
    return schema


def _answers(predict_proba: Any, row: np.ndarray) -> bool:
    try:
        proba = np.asarray(predict_proba(row.reshape(1, -1)), dtype=np.float64)
    except Exception as exc:  # the model refusing is the answer we are asking for
        log.debug("probe refused: %s: %s", type(exc).__name__, exc)
        return False
    return proba.ndim == 2 and proba.shape[0] == 1 and bool(np.isfinite(proba).all())
