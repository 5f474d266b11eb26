"""Booster files read without Django: formats recognised by content, predictions equal to the library's own, the
reference estimator's hyperparameters read from the file (and the inferred ones named), malformed trees refused."""
from __future__ import annotations

import json
import pickle

import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.base import clone

from audits.attacks.reference import with_random_state
from monitor.registry.boosters import (
    LIGHTGBM_TEXT,
    XGBOOST_JSON,
    XGBOOST_UBJ,
    BoosterError,
    load_booster,
    reference_estimator,
    sniff_booster,
)


def data(*, n: int = 300, classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.digitize(X[:, 0] + rng.normal(scale=0.5, size=n), np.linspace(-1, 1, classes + 1)[1:-1])
    return X, y


def xgboost_file(tmp_path, estimator, suffix: str = "json") -> bytes:
    X, y = data(classes=3 if estimator.objective.startswith("multi") else 2)
    estimator.fit(X, y)
    path = tmp_path / f"model.{suffix}"
    estimator.save_model(path)
    return path.read_bytes()


def lightgbm_file(estimator, *, classes: int = 2, **save) -> bytes:
    X, y = data(classes=classes)
    return estimator.fit(X, y).booster_.model_to_string(**save).encode()


@pytest.mark.parametrize(("suffix", "fmt"), [("json", XGBOOST_JSON), ("ubj", XGBOOST_UBJ)])
def test_xgboost_files_are_recognised_by_content_and_predict_as_the_library(tmp_path, suffix, fmt):
    estimator = xgboost.XGBClassifier(n_estimators=12, max_depth=3, n_jobs=1)
    raw = xgboost_file(tmp_path, estimator, suffix)
    assert sniff_booster(raw) == fmt
    predictor = load_booster(raw, fmt)
    X, _ = data(seed=5)
    X[0, 2] = np.nan  # a missing value, as both libraries take it
    proba = predictor.predict_proba(X)
    assert proba.dtype == np.float64 and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(proba, estimator.predict_proba(X).astype(np.float64))
    assert (predictor.classes, predictor.n_classes, predictor.n_features, predictor.feature_names) == ([], 2, 4, None)


@pytest.mark.parametrize("objective", ["multi:softprob", "multi:softmax"])
def test_multiclass_xgboost_gives_the_library_s_probability_matrix(tmp_path, objective):
    estimator = xgboost.XGBClassifier(n_estimators=5, max_depth=3, objective=objective, n_jobs=1)
    predictor = load_booster(xgboost_file(tmp_path, estimator), XGBOOST_JSON)
    X, _ = data(seed=6)
    assert predictor.n_classes == 3
    assert np.allclose(predictor.predict_proba(X), estimator.predict_proba(X), atol=1e-7)


def test_a_lightgbm_text_file_predicts_as_the_library_with_missing_values():
    estimator = lightgbm.LGBMClassifier(n_estimators=15, num_leaves=9, verbose=-1, n_jobs=1)
    raw = lightgbm_file(estimator)
    assert sniff_booster(raw) == LIGHTGBM_TEXT
    predictor = load_booster(raw, LIGHTGBM_TEXT)
    X, _ = data(seed=7)
    X[:5, 1] = np.nan
    assert np.array_equal(predictor.predict_proba(X), estimator.predict_proba(X))
    assert predictor.feature_names is None  # LightGBM's generated Column_i names are not a schema


def test_lightgbm_hyperparameters_come_from_the_file_s_parameters_and_none_is_inferred():
    estimator = lightgbm.LGBMClassifier(n_estimators=17, num_leaves=13, learning_rate=0.07, min_child_samples=7,
                                        subsample=0.8, subsample_freq=1, colsample_bytree=0.9, reg_lambda=0.5,
                                        max_depth=6, verbose=-1, n_jobs=1)
    reference, inferred = reference_estimator(load_booster(lightgbm_file(estimator), LIGHTGBM_TEXT))
    assert isinstance(reference, lightgbm.LGBMClassifier) and inferred == {}
    params = reference.get_params()
    assert {k: params[k] for k in ("n_estimators", "num_leaves", "learning_rate", "min_child_samples", "subsample",
                                   "subsample_freq", "colsample_bytree", "reg_lambda", "max_depth", "objective")} == {
        "n_estimators": 17, "num_leaves": 13, "learning_rate": 0.07, "min_child_samples": 7, "subsample": 0.8,
        "subsample_freq": 1, "colsample_bytree": 0.9, "reg_lambda": 0.5, "max_depth": 6, "objective": "binary"}
    assert params["n_jobs"] == 1


def test_a_lightgbm_model_cut_short_says_its_rounds_were_inferred_from_the_trees():
    estimator = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1)
    predictor = load_booster(lightgbm_file(estimator, num_iteration=8), LIGHTGBM_TEXT)
    reference, inferred = reference_estimator(predictor)
    assert reference.get_params()["n_estimators"] == 8
    assert "asked for 20" in inferred["n_estimators"]


def test_xgboost_rounds_and_depth_are_inferred_from_the_trees_and_the_rest_defaulted(tmp_path):
    estimator = xgboost.XGBClassifier(n_estimators=9, max_depth=3, learning_rate=0.2, n_jobs=1)
    reference, inferred = reference_estimator(load_booster(xgboost_file(tmp_path, estimator), XGBOOST_JSON))
    params = reference.get_params()
    assert (params["n_estimators"], params["max_depth"], params["objective"]) == (9, 3, "binary:logistic")
    assert "from the trees" in inferred["n_estimators"] and "from the trees" in inferred["max_depth"]
    # The file keeps no learning rate: the library's default is used and said to be one.
    assert params["learning_rate"] is None and "default (0.3)" in inferred["learning_rate"]


def test_xgboost_training_parameters_given_in_the_file_are_used_and_not_marked_inferred(tmp_path):
    X, y = data()
    estimator = xgboost.XGBClassifier(n_estimators=6, max_depth=2, learning_rate=0.2, subsample=0.9, n_jobs=1).fit(X, y)
    estimator.get_booster().set_attr(training_parameters=json.dumps({"eta": 0.2, "subsample": 0.9, "unknown": 1}))
    estimator.save_model(tmp_path / "model.json")
    reference, inferred = reference_estimator(load_booster((tmp_path / "model.json").read_bytes(), XGBOOST_JSON))
    assert (reference.get_params()["learning_rate"], reference.get_params()["subsample"]) == (0.2, 0.9)
    assert "learning_rate" not in inferred and "subsample" not in inferred and "min_child_weight" in inferred


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_reference_estimators_clone_reseed_and_fit_like_any_scikit_learn_estimator(tmp_path, library):
    if library == "xgboost":
        raw, fmt = xgboost_file(tmp_path, xgboost.XGBClassifier(n_estimators=5, n_jobs=1)), XGBOOST_JSON
    else:
        raw, fmt = lightgbm_file(lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)), LIGHTGBM_TEXT
    reference, _ = reference_estimator(load_booster(raw, fmt))
    X, y = data(seed=3)
    first = with_random_state(clone(reference), 11)
    assert first.get_params()["random_state"] == 11 and reference.get_params()["random_state"] == 0
    assert first.fit(X, y).predict_proba(X).shape == (len(X), 2)


def test_objectives_without_class_probabilities_are_refused_by_name(tmp_path):
    X, y = data()
    regressor = xgboost.XGBRegressor(n_estimators=3).fit(X, y)
    regressor.save_model(tmp_path / "model.json")
    with pytest.raises(BoosterError, match="'reg:squarederror', not a classifier with probabilities"):
        load_booster((tmp_path / "model.json").read_bytes(), XGBOOST_JSON)
    text = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y).booster_.model_to_string().encode()
    with pytest.raises(BoosterError, match="'regression', not a classifier"):
        load_booster(text, LIGHTGBM_TEXT)
    ova = lightgbm_file(lightgbm.LGBMClassifier(n_estimators=3, objective="multiclassova", verbose=-1), classes=3)
    with pytest.raises(BoosterError, match="'multiclassova'"):
        load_booster(ova, LIGHTGBM_TEXT)


def test_an_xgboost_tree_pointing_outside_itself_is_refused_before_xgboost_reads_it(tmp_path):
    model = json.loads(xgboost_file(tmp_path, xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][1]
    tree["left_children"][0] = 10_000
    with pytest.raises(BoosterError, match="tree 1 is malformed: node 0's children"):
        load_booster(json.dumps(model).encode(), XGBOOST_JSON)
    tree["left_children"][0] = 0  # a cycle back to the root
    with pytest.raises(BoosterError, match="tree 1 is malformed"):
        load_booster(json.dumps(model).encode(), XGBOOST_JSON)


def test_a_lightgbm_tree_pointing_outside_itself_is_refused_before_lightgbm_reads_it():
    lines = lightgbm_file(lightgbm.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1)).decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("left_child="))
    lines[at] = "left_child=" + " ".join(["9"] + lines[at].split("=")[1].split()[1:])
    with pytest.raises(BoosterError, match="tree 0 is malformed: node 9 is out of range"):
        load_booster("\n".join(lines).encode(), LIGHTGBM_TEXT)


def test_lightgbm_tree_sizes_are_not_trusted():
    """LightGBM jumps by the header's tree_sizes; lying sizes are dropped and the trees found by their lines."""
    estimator = lightgbm.LGBMClassifier(n_estimators=4, verbose=-1)
    lines = lightgbm_file(estimator).decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("tree_sizes="))
    lines[at] = "tree_sizes=" + " ".join(["999999"] * 4)
    predictor = load_booster("\n".join(lines).encode(), LIGHTGBM_TEXT)
    X, _ = data(seed=9)
    assert np.array_equal(predictor.predict_proba(X), estimator.predict_proba(X))


@pytest.mark.parametrize("raw", [
    pickle.dumps({"learner": {}, "version": [3, 2, 0]}),
    b'{"learner": 1}',
    b'{"not": "a booster"}',
    b"{Lxxxxxxxx",
    b"tree\n",
    bytes(range(256)),
])
def test_other_content_is_not_taken_for_a_booster(raw):
    assert sniff_booster(raw) is None


def test_a_file_that_starts_like_ubjson_but_is_not_a_model_is_refused_with_xgboost_s_reason():
    raw = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner" + bytes(range(200))
    assert sniff_booster(raw) == XGBOOST_UBJ
    with pytest.raises(BoosterError, match="XGBoost cannot read the model"):
        load_booster(raw, XGBOOST_UBJ)
