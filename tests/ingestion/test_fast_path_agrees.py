"""The fast path of the row form (`validate._validate_fast`: columns checked at once) accepts exactly what the
row-by-row validator accepts, and stores the same values: on clean batches and on batches with one defect of
every kind a client sends (a field left out or sent as null, an unknown field, a boolean or a numeric string for a
number, blank or over-long or unprintable ids, a timestamp in the future), for a model of plain numbers and for a
pipeline over raw mixed-type values (numbers some of which may be missing, categories, some never seen in
training). Pure: no database."""
from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from monitor.ingestion import validate
from monitor.platform.feature_schema import CATEGORICAL, MAX_CATEGORY_LENGTH, Feature, FeatureSchema

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
N_FEATURES = 4
NUMERIC = SimpleNamespace(n_features=N_FEATURES, class_labels=["no", "yes"],
                          schema=FeatureSchema.numeric([f"f{i}" for i in range(N_FEATURES)]))
# The same width over raw values: f0 a number that may be missing, f1 a number that may not, f2 and f3 categories
# (f3 may be missing).
MIXED = SimpleNamespace(n_features=N_FEATURES, class_labels=["no", "yes"], schema=FeatureSchema((
    Feature("f0", missing_seen=True, missing_accepted=True), Feature("f1"),
    Feature("f2", kind=CATEGORICAL, categories=("red", "green", "blue")),
    Feature("f3", kind=CATEGORICAL, categories=("a", "b", " "), missing_seen=True, missing_accepted=True))))
MODELS = {"numeric": NUMERIC, "mixed": MIXED}


def slow(rows: list, model: SimpleNamespace) -> validate.QueryBatch | None:
    """The row-by-row validator alone (the fast path switched off), None where it refuses the batch."""
    fast = validate._validate_fast
    validate._validate_fast = lambda *args, **kwargs: None
    try:
        return validate.validate_queries(copy.deepcopy(rows), model=model, max_queries=10_000, now=NOW)
    except validate.IngestError:
        return None
    finally:
        validate._validate_fast = fast


def mixed_features(rng: np.random.Generator) -> list:
    numbers = rng.normal(size=2).tolist()
    values = [None if rng.random() < 0.2 else numbers[0], numbers[1],
              str(rng.choice(["red", "green", "blue", "violet", "Red"])),  # two never seen in training
              None if rng.random() < 0.3 else str(rng.choice(["a", "b", " ", "c"]))]
    if rng.random() < 0.2:
        values[1] = int(values[1] * 10)
    return values


def clean_rows(rng: np.random.Generator, n: int, kind: str = "numeric") -> list[dict]:
    rows = []
    for i in range(n):
        p = float(rng.uniform())
        features = rng.normal(size=N_FEATURES).tolist() if kind == "numeric" else mixed_features(rng)
        row = {"client_id": f"client-{rng.integers(0, 50)}", "features": features, "output": [1 - p, p]}
        if rng.random() < 0.7:
            row["ts"] = (NOW - timedelta(seconds=float(rng.uniform(0, 86_400)))).timestamp()
        elif rng.random() < 0.5:
            row["ts"] = None
        if rng.random() < 0.7:
            row["request_id"] = f"r-{i}"
        elif rng.random() < 0.5:
            row["request_id"] = None
        if kind == "numeric" and rng.random() < 0.2:
            row["features"] = [int(v * 10) for v in row["features"]]  # integers are numbers too
        rows.append(row)
    return rows


DEFECTS = {
    "unknown field": lambda row: row.update(colour="red"),
    "client_id left out": lambda row: row.pop("client_id"),
    "features left out": lambda row: row.pop("features"),
    "output left out": lambda row: row.pop("output"),
    "client_id null": lambda row: row.update(client_id=None),
    "client_id blank": lambda row: row.update(client_id="   "),
    "client_id empty": lambda row: row.update(client_id=""),
    "client_id too long": lambda row: row.update(client_id="x" * (validate.MAX_ID_LENGTH + 1)),
    "client_id at the limit": lambda row: row.update(client_id="x" * validate.MAX_ID_LENGTH),
    "client_id with a control character": lambda row: row.update(client_id="a\x00b"),
    "client_id a number": lambda row: row.update(client_id=7),
    "request_id blank": lambda row: row.update(request_id="\t"),
    "request_id a number": lambda row: row.update(request_id=3),
    "a boolean feature": lambda row: row["features"].__setitem__(1, True),
    "a numeric string feature": lambda row: row["features"].__setitem__(2, "1.5"),
    "a null feature": lambda row: row["features"].__setitem__(0, None),
    "a NaN feature": lambda row: row["features"].__setitem__(0, math.nan),
    "an integer past float64": lambda row: row["features"].__setitem__(3, 10**400),
    "features one short": lambda row: row["features"].pop(),
    "output above one": lambda row: row.update(output=[-0.5, 1.5]),
    "ts in the future": lambda row: row.update(ts=(NOW + timedelta(hours=1)).timestamp()),
    "ts as ISO text": lambda row: row.update(ts="2026-12-07T11:00:00+00:00"),
    "a row that is a list": lambda row: None,  # replaced below
}
# What only a pipeline over raw values can be sent: f0 and f3 may be null, f1 may not; f2 and f3 are categories.
MIXED_DEFECTS = {
    "a null where missing is not accepted": lambda row: row["features"].__setitem__(1, None),
    "a null where missing is accepted": lambda row: row["features"].__setitem__(0, None),
    "a null category where missing is accepted": lambda row: row["features"].__setitem__(3, None),
    "a null category where missing is not accepted": lambda row: row["features"].__setitem__(2, None),
    "an empty category": lambda row: row["features"].__setitem__(2, ""),
    "a blank category": lambda row: row["features"].__setitem__(2, "  "),
    "a category at the length limit": lambda row: row["features"].__setitem__(2, "z" * MAX_CATEGORY_LENGTH),
    "a category past the length limit": lambda row: row["features"].__setitem__(2, "z" * (MAX_CATEGORY_LENGTH + 1)),
    "a category with a control character": lambda row: row["features"].__setitem__(2, "re\nd"),
    "a category sent as a number": lambda row: row["features"].__setitem__(2, 3),
    "a category sent as a boolean": lambda row: row["features"].__setitem__(2, False),
    "a category sent as a list": lambda row: row["features"].__setitem__(3, ["a"]),
    "a string for a number": lambda row: row["features"].__setitem__(0, "red"),
    "a NaN for a missing number": lambda row: row["features"].__setitem__(0, math.nan),
    "an infinite number": lambda row: row["features"].__setitem__(1, -math.inf),
    "a number past float32": lambda row: row["features"].__setitem__(1, 10**39),
    "features as an object": lambda row: row.update(features=dict(zip(["f0", "f1", "f2", "f3"], row["features"],
                                                                      strict=True))),
}


def same(a: validate.QueryBatch, b: validate.QueryBatch) -> None:
    assert a.client_ids == b.client_ids and a.request_ids == b.request_ids
    assert list(a.timestamps) == list(b.timestamps)
    assert np.array_equal(a.micros, b.micros)
    assert np.array_equal(a.features, b.features, equal_nan=True) and np.array_equal(a.outputs, b.outputs)
    assert a.server_stamped == b.server_stamped
    assert a.unseen_cells == b.unseen_cells


def fast_path(rows: list, model: SimpleNamespace) -> validate.QueryBatch | None:
    return validate._validate_fast(copy.deepcopy(rows), schema=model.schema, n_classes=2, now=NOW)


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("seed", range(6))
def test_clean_batches_give_the_same_batch_both_ways(seed, kind):
    rows = clean_rows(np.random.default_rng(seed), 300, kind)
    fast = fast_path(rows, MODELS[kind])
    assert fast is not None, "a clean batch left the fast path"
    expected = slow(rows, MODELS[kind])
    same(fast, expected)
    if kind == "mixed":  # the batches hold what the mixed path must handle
        assert np.isnan(expected.features).any() and expected.unseen_cells


@pytest.mark.parametrize(("kind", "defect"), [("numeric", name) for name in sorted(DEFECTS)]
                         + [("mixed", name) for name in sorted(DEFECTS) if "feature" not in name]
                         + [("mixed", name) for name in sorted(MIXED_DEFECTS)])
@pytest.mark.parametrize("seed", range(3))
def test_a_defect_is_refused_or_accepted_as_the_row_by_row_validator_does(kind, defect, seed):
    rng = np.random.default_rng(100 + seed)
    model = MODELS[kind]
    rows = clean_rows(rng, 50, kind)
    where = int(rng.integers(0, len(rows)))
    if defect == "a row that is a list":
        rows[where] = list(rows[where].values())
    else:
        {**DEFECTS, **MIXED_DEFECTS}[defect](rows[where])
    expected = slow(rows, model)
    fast = fast_path(rows, model)
    if fast is not None:  # what the fast path accepts, the row-by-row validator accepts with the same values
        assert expected is not None, f"the fast path accepted a batch with {defect}"
        same(fast, expected)
    # Whatever the fast path passes on, validate_queries answers as the row-by-row validator does.
    try:
        whole = validate.validate_queries(copy.deepcopy(rows), model=model, max_queries=10_000, now=NOW)
    except validate.IngestError:
        whole = None
    assert (whole is None) == (expected is None), defect
    if whole is not None:
        same(whole, expected)


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("seed", range(3))
def test_the_columnar_form_gives_the_row_forms_batch(seed, kind):
    rows = clean_rows(np.random.default_rng(200 + seed), 200, kind)
    for row in rows:
        row.setdefault("ts", None)
        row.setdefault("request_id", None)
    columns = {name: [row[name] for row in rows] for name in validate.COLUMNS_ALL}
    model = MODELS[kind]
    same(validate.validate_columns(columns, model=model, max_queries=10_000, now=NOW), slow(rows, model))
