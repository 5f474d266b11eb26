"""Registering a model: artifacts are loaded safely, CSVs are validated, and a refusal stores nothing."""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from sklearn.linear_model import LogisticRegression

from monitor.models import ModelArtifact, ReferenceDataset, RegisteredModel
from monitor.registry.registration import RegistrationError, Upload, register_model
from tests.factories import FEATURES, csv_bytes, make_data, skops_bytes

pytestmark = pytest.mark.django_db


def register(**overrides) -> RegisteredModel:
    arguments = dict(
        slug="m1", name="M1", label_column="label",
        artifact=Upload(skops_bytes(), "m.skops"),
        members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))),
    )
    arguments.update(overrides)
    return register_model(**arguments)


def assert_nothing_stored() -> None:
    assert not RegisteredModel.objects.exists()
    assert not ModelArtifact.objects.exists()
    assert not ReferenceDataset.objects.exists()


class _Payload:
    """Pickling this makes a file appear when unpickled: proof that the loader ran it."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_skops_model_registers_with_hashes_and_classes():
    artifact_bytes = skops_bytes()
    model = register(artifact=Upload(artifact_bytes), population=Upload(csv_bytes(*make_data(seed=3))))
    assert model.source == "skops" and model.feature_names == FEATURES and model.class_labels == ["no", "yes"]
    artifact = model.current_artifact()
    import hashlib

    assert artifact.sha256 == hashlib.sha256(artifact_bytes).hexdigest() and bytes(artifact.data) == artifact_bytes
    kinds = {d.kind: d for d in model.datasets.all()}
    assert set(kinds) == {"members", "nonmembers", "population"}
    assert kinds["members"].sha256 == hashlib.sha256(csv_bytes(*make_data(seed=1))).hexdigest()
    arrays = kinds["members"].load()
    X, y = make_data(seed=1)
    assert np.allclose(arrays.X, X) and arrays.y.tolist() == [["no", "yes"].index(v) for v in y]


@pytest.mark.parametrize("dumper", ["pickle", "joblib"])
def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, dumper):
    marker = tmp_path / "payload-ran"
    _Payload.marker = str(marker)
    if dumper == "pickle":
        data = pickle.dumps(_Payload())
    else:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(_Payload(), buffer, compress=3)
        data = buffer.getvalue()
    with pytest.raises(RegistrationError) as caught:
        register(artifact=Upload(data, "model.pkl"))
    assert caught.value.field == "artifact"
    assert "pickle" in caught.value.message and "executes code" in caught.value.message
    assert not marker.exists()
    # The payload does work when unpickled, so the check above is meaningful.
    pickle.loads(pickle.dumps(_Payload()))  # noqa: S301 (our own payload, to prove it is live)
    assert marker.exists()
    assert_nothing_stored()


class ShadyClassifier(LogisticRegression):
    """A subclass skops knows nothing about: its type must be named and refused."""


def test_a_skops_file_with_an_untrusted_type_is_refused_naming_it():
    import skops.io as sio

    X, y = make_data()
    estimator = ShadyClassifier(max_iter=300).fit(X, y)
    with pytest.raises(RegistrationError) as caught:
        register(artifact=Upload(sio.dumps(estimator)))
    assert "do not trust" in caught.value.message
    assert "tests.registry.test_registration.ShadyClassifier" in caught.value.message
    assert_nothing_stored()


def test_a_tree_with_out_of_range_node_indices_is_refused():
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_data()
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    state = tree.tree_.__getstate__()
    state["nodes"]["left_child"][0] = 10_000_000  # would read far outside the node array
    tree.tree_.__setstate__(state)
    with pytest.raises(RegistrationError, match="malformed decision tree"):
        register(artifact=Upload(sio.dumps(tree)))
    assert_nothing_stored()


@pytest.mark.parametrize(("data", "phrase"), [
    (b"", "empty"),
    (b"hello, this is text", "unrecognised artifact"),
    (b"PK\x03\x04garbage", "damaged ZIP"),
])
def test_unrecognised_artifacts_are_refused(data, phrase):
    with pytest.raises(RegistrationError, match=phrase):
        register(artifact=Upload(data))
    assert_nothing_stored()


def test_a_zip_that_is_not_skops_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(RegistrationError, match="not a skops file"):
        register(artifact=Upload(buffer.getvalue()))


def test_an_onnx_model_registers_and_predicts():
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_data()
    estimator = RandomForestClassifier(8, random_state=0).fit(X, (y == "yes").astype(int))
    onnx_bytes = to_onnx(estimator, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    members = csv_bytes(X, np.where(y == "yes", "1", "0"))
    model = register(artifact=Upload(onnx_bytes, "m.onnx"), members=Upload(members), nonmembers=Upload(members))
    assert model.source == "onnx" and model.class_labels == ["0", "1"]
    from monitor.registry.predictors import predictor_for

    proba = predictor_for(model).predict_proba(X[:5])
    assert np.allclose(proba, estimator.predict_proba(X[:5].astype(np.float32)), atol=1e-5)


def test_an_endpoint_model_registers_with_classes_from_the_data():
    model = register(artifact=None, endpoint_url="http://127.0.0.1:9/predict")
    assert model.source == "endpoint" and model.class_labels == ["no", "yes"]
    assert not ModelArtifact.objects.exists()


@pytest.mark.parametrize(("mutate", "where", "phrase"), [
    (lambda f: f.drop(columns=["income"]), {"column": "age, tenure, score"}, "feature columns found"),
    (lambda f: f.assign(colour="red"), {"column": "age, income, tenure, score, colour"}, "feature columns found"),
    (lambda f: f.assign(age=["x"] + list(f.age[1:])), {"row": 1, "column": "age"}, "'x' is not a number"),
    (lambda f: f.assign(tenure=list(f.tenure[:2]) + ["nan"] + list(f.tenure[3:])), {"row": 3, "column": "tenure"}, "not a finite number"),
    (lambda f: f.assign(score=list(f.score[:4]) + [""] + list(f.score[5:])), {"row": 5, "column": "score"}, "empty cell"),
    (lambda f: f.assign(label=["maybe"] + list(f.label[1:])), {"row": 1, "column": "label"}, "not one of the model's classes"),
    (lambda f: f.assign(age=["=cmd|' /C calc'!A0"] + list(f.age[1:])), {"row": 1, "column": "age"}, "is not a number"),
])
def test_bad_member_csv_names_row_and_column_and_stores_nothing(mutate, where, phrase):
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(csv_bytes(*make_data(seed=1))), dtype=str)
    bad = mutate(frame).to_csv(index=False).encode()
    with pytest.raises(RegistrationError) as caught:
        register(members=Upload(bad))
    assert caught.value.field == "members"
    matching = [d for d in caught.value.details if all(d.get(k) == v for k, v in where.items())]
    assert matching and phrase in matching[0]["message"], caught.value.details
    assert_nothing_stored()


def test_nonmember_csv_with_other_columns_is_refused_naming_each():
    X, y = make_data(seed=2)
    bad = csv_bytes(X, y, features=FEATURES[:3] + ["colour"])
    with pytest.raises(RegistrationError) as caught:
        register(nonmembers=Upload(bad))
    assert caught.value.field == "nonmembers"
    assert caught.value.details == [{"column": "score", "message": "missing (the model expects it)"},
                                    {"column": "colour", "message": "unexpected (not a feature of the model)"}]
    assert_nothing_stored()


@pytest.mark.parametrize(("overrides", "field", "phrase"), [
    ({"slug": "Bad Slug"}, "slug", "lowercase"),
    ({"output_policy": "round:x"}, "output_policy", "unknown output policy"),
    ({"output_policy": "noise:5"}, "output_policy", "0 < SCALE"),
    ({"endpoint_url": "http://x"}, "artifact", "exactly one"),
    ({"artifact": None, "endpoint_url": "ftp://x"}, "endpoint", "http"),
    ({"label_column": "target"}, "members", "label column 'target' is missing"),
])
def test_bad_options_are_refused(overrides, field, phrase):
    with pytest.raises(RegistrationError) as caught:
        register(**overrides)
    assert caught.value.field == field and phrase in caught.value.message
    assert_nothing_stored()


def test_duplicate_slug_is_refused_and_the_first_model_is_untouched():
    first = register()
    with pytest.raises(RegistrationError, match="already exists"):
        register(name="Another")
    assert RegisteredModel.objects.get().name == first.name


def test_register_model_command(tmp_path, capsys):
    (tmp_path / "m.skops").write_bytes(skops_bytes())
    (tmp_path / "members.csv").write_bytes(csv_bytes(*make_data(seed=1)))
    (tmp_path / "nonmembers.csv").write_bytes(csv_bytes(*make_data(seed=2)))
    call_command("register_model", "--slug", "cli", "--name", "CLI", "--artifact", str(tmp_path / "m.skops"),
                 "--members", str(tmp_path / "members.csv"), "--nonmembers", str(tmp_path / "nonmembers.csv"),
                 "--label-column", "label", "--output-policy", "round:2")
    assert "registered cli" in capsys.readouterr().out
    assert RegisteredModel.objects.get(slug="cli").output_policy == "round:2"


def test_register_model_command_reports_the_bad_cell(tmp_path):
    X, y = make_data(seed=1)
    X[6, 1] = np.nan
    (tmp_path / "m.skops").write_bytes(skops_bytes())
    (tmp_path / "members.csv").write_bytes(csv_bytes(X, y))
    (tmp_path / "nonmembers.csv").write_bytes(csv_bytes(*make_data(seed=2)))
    with pytest.raises(CommandError) as caught:
        call_command("register_model", "--slug", "cli", "--name", "CLI", "--artifact", str(tmp_path / "m.skops"),
                     "--members", str(tmp_path / "members.csv"), "--nonmembers", str(tmp_path / "nonmembers.csv"),
                     "--label-column", "label")
    assert "row 7, column income: empty cell" in str(caught.value)
    assert_nothing_stored()
