"""XGBoost and LightGBM models in their own formats: they register, the gateway answers exactly as the library does,
an audit retrains the same booster class; pickles and junk under those names are refused and never run."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import lightgbm
import numpy as np
import pytest
import xgboost

from audits import runner
from audits.reference_cache import cache_keys, load_cached_references
from audits.scheduling import request_audit
from monitor.models import RegisteredModel
from monitor.registry.registration import RegistrationError, Upload, register_model
from tests.factories import CLASSES, FEATURES, csv_bytes, ingest_token, make_data

pytestmark = pytest.mark.django_db

FORMATS = [("model.json", "xgboost_json"), ("model.ubj", "xgboost_ubj"), ("model.txt", "lightgbm_text")]


def trained(filename: str, tmp_path: Path, *, X: np.ndarray, y: np.ndarray, classifier: bool = True):
    """A booster fitted on (X, y) with y's labels as sorted indices, and its file written by the library itself."""
    target = np.searchsorted(CLASSES, y) if y.dtype.kind in "OU" else y
    path = tmp_path / filename
    if filename.endswith(".txt"):
        kind = lightgbm.LGBMClassifier if classifier else lightgbm.LGBMRegressor
        estimator = kind(n_estimators=30, num_leaves=15, min_child_samples=2, verbose=-1, n_jobs=1).fit(X, target)
        estimator.booster_.save_model(path)
    else:
        kind = xgboost.XGBClassifier if classifier else xgboost.XGBRegressor
        estimator = kind(n_estimators=30, max_depth=5, n_jobs=1).fit(X, target)
        estimator.save_model(path)
    return estimator, path.read_bytes()


def register(slug: str, artifact: Upload, *, population: bool = False) -> RegisteredModel:
    return register_model(
        slug=slug, name=slug, label_column="label", artifact=artifact,
        members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))),
        population=Upload(csv_bytes(*make_data(seed=3, n=400))) if population else None,
    )


class _Payload:
    """Unpickling this makes a file appear: proof that a loader ran it."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize(("filename", "fmt"), FORMATS)
def test_a_booster_registers_and_the_gateway_answers_as_the_library(api_as, tmp_path, filename, fmt):
    estimator, raw = trained(filename, tmp_path, X=make_data(seed=1)[0], y=make_data(seed=1)[1])
    model = register(f"boost-{fmt.replace('_', '-')}", Upload(raw, filename))
    assert model.source == fmt and model.current_artifact().format == fmt
    assert model.class_labels == CLASSES and model.feature_names == FEATURES  # from the data: the file has neither

    rows = make_data(seed=7, n=8)[0].astype(np.float32)
    rows[0, 1] = np.nan  # a missing value goes to the booster as one
    payload = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    api = api_as(ingest_token(model=model))
    response = api.post(f"/api/v1/models/{model.slug}/predict", {"client_id": "app-1", "features": payload})
    assert response.status_code == 200, response.content
    expected = estimator.predict_proba(rows.astype(np.float64)).astype(np.float64)
    assert np.array_equal(np.asarray(response.json()["outputs"]), expected)


@pytest.mark.parametrize(("filename", "fmt"), [FORMATS[0], FORMATS[2]])
def test_an_audit_of_a_booster_retrains_the_same_booster_class_and_says_what_it_inferred(tmp_path, filename, fmt):
    X, y = make_data(seed=1)
    estimator, raw = trained(filename, tmp_path, X=X, y=y)
    model = register(f"audit-{fmt.replace('_', '-')}", Upload(raw, filename), population=True)
    run = runner.execute(request_audit(model, enqueue=False, remediation=True).pk)
    assert run.status == "done", run.error
    assert run.config["stand_in_used"] is None
    inferred = run.config["reference_parameters_inferred"]
    if fmt == "xgboost_json":
        assert {"n_estimators", "max_depth", "learning_rate"} <= set(inferred)
    else:
        assert inferred == {}  # LightGBM's file lists every parameter the reference models need
    references = [load_cached_references(model, key) for key in cache_keys(model, run).values()]
    models = [m for refs in references if refs is not None for m in refs.models]
    assert models and all(type(m) is type(estimator) for m in models)
    assert run.result["headline"]["tpr_at_fpr"]["0.01"]["value"] >= 0
    assert "booster" in run.result["remediation"]["artifact"]["reason"]


@pytest.mark.parametrize("filename", ["model.json", "model.txt", "model.ubj"])
@pytest.mark.parametrize("protocol", [0, pickle.DEFAULT_PROTOCOL])
def test_a_pickle_under_a_booster_name_is_refused_and_never_unpickled(tmp_path, filename, protocol):
    marker = tmp_path / "payload-ran"
    _Payload.marker = str(marker)
    with pytest.raises(RegistrationError) as caught:
        register("pickled", Upload(pickle.dumps(_Payload(), protocol=protocol), filename))
    assert caught.value.field == "artifact" and "pickle" in caught.value.message
    assert "executes code" in caught.value.message
    assert not marker.exists() and not RegisteredModel.objects.exists()
    pickle.loads(pickle.dumps(_Payload(), protocol=protocol))  # noqa: S301 - the payload does run when unpickled
    assert marker.exists()


def test_random_bytes_named_ubj_are_refused_with_the_formats_accepted():
    with pytest.raises(RegistrationError) as caught:
        register("noise", Upload(os.urandom(4096), "model.ubj"))
    assert caught.value.field == "artifact"
    assert caught.value.message.startswith("unrecognised artifact") and "XGBoost model (.json, .ubj)" in caught.value.message


def test_a_booster_file_named_as_another_booster_format_is_refused(tmp_path):
    _, raw = trained("model.json", tmp_path, X=make_data(seed=1)[0], y=make_data(seed=1)[1])
    with pytest.raises(RegistrationError, match="it is an XGBoost JSON model, not a LightGBM text model"):
        register("renamed", Upload(raw, "model.txt"))


@pytest.mark.parametrize(("filename", "objective"), [("model.json", "reg:squarederror"), ("model.txt", "regression")])
def test_a_regression_booster_is_refused_naming_its_objective(tmp_path, filename, objective):
    X, y = make_data(seed=1)
    _, raw = trained(filename, tmp_path, X=X, y=X[:, 0], classifier=False)
    with pytest.raises(RegistrationError) as caught:
        register("regressor", Upload(raw, filename))
    assert caught.value.field == "artifact" and f"objective is {objective!r}" in caught.value.message
    assert not RegisteredModel.objects.exists()


def test_a_booster_with_more_classes_than_the_data_has_labels_is_refused(tmp_path):
    X, _ = make_data(seed=1)
    three = np.arange(len(X)) % 3
    _, raw = trained("model.json", tmp_path, X=X, y=three)
    with pytest.raises(RegistrationError) as caught:
        register("three", Upload(raw, "model.json"))
    assert "predicts 3 classes but the data has 2 labels" in caught.value.message
    assert "class i is the i-th label in sorted order" in caught.value.message


def test_a_booster_inside_a_skops_pipeline_is_refused_with_what_to_upload_instead():
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_data(seed=1)
    pipeline = make_pipeline(StandardScaler(), xgboost.XGBClassifier(n_estimators=3, n_jobs=1))
    pipeline.fit(X, np.searchsorted(CLASSES, y))
    with pytest.raises(RegistrationError) as caught:
        register("piped", Upload(sio.dumps(pipeline), "model.skops"))
    assert "xgboost.sklearn.XGBClassifier" in caught.value.message
    assert "register the booster alone, saved with its own save_model" in caught.value.message
