"""The model a credit team runs: a scikit-learn pipeline over raw rows (category strings, missing cells), saved with
skops, registered, queried, predicted and shown as it is — never re-encoded by hand."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitor.ingestion.vectors import decode_vectors
from monitor.models import QueryLog, RegisteredModel, UnseenCategory
from monitor.registry.registration import RegistrationError, Upload, register_model
from tests.factories import adult_sample, ingest_token, make_user, register_credit_pipeline, user_token

pytestmark = pytest.mark.django_db

ROW = {"age": 41, "workclass": "Private", "fnlwgt": 200_000, "education": "Bachelors", "education_num": 13,
       "marital_status": "Married-civ-spouse", "occupation": None, "relationship": "Husband", "race": "White",
       "sex": "Male", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 45, "native_country": "United-States"}


@pytest.fixture
def credit():
    return register_credit_pipeline()


def output(pipeline, rows: list[dict]) -> list[list[float]]:
    return pipeline.predict_proba(pd.DataFrame(rows, columns=list(ROW)).fillna(np.nan)).tolist()


def test_the_pipeline_registers_from_csvs_with_strings_and_empty_cells_and_its_schema_is_shown(credit, client):
    model, _, members = credit
    features = {f["name"]: f for f in model.features}
    assert features["workclass"]["kind"] == "categorical" and "Private" in features["workclass"]["categories"]
    assert features["workclass"]["missing_seen"] and features["workclass"]["missing_accepted"]
    assert features["age"]["kind"] == "numeric" and features["age"]["missing_accepted"]  # the imputer takes it
    assert features["sex"]["categories"] == ["Female", "Male"]
    members_stored = model.datasets.get(kind="members").load()
    assert np.isnan(members_stored.X[:, model.feature_names.index("workclass")]).sum() == members["workclass"].isna().sum()

    api = client.get(f"/api/v1/models/{model.slug}", HTTP_AUTHORIZATION=f"Bearer {user_token(role='viewer')}")
    assert api.status_code == 200
    by_name = {f["name"]: f for f in api.json()["features"]}
    assert by_name["occupation"]["kind"] == "categorical" and by_name["occupation"]["unseen"] == {"values": 0, "queries": 0}
    assert by_name["hours_per_week"] == {"name": "hours_per_week", "kind": "numeric", "categories": None,
                                         "missing_seen": False, "missing_accepted": True, "unseen_accepted": None,
                                         "unseen": None}
    client.force_login(make_user(role="viewer"))
    page = client.get(f"/models/{model.slug}/").content.decode()
    assert '<table class="grid" id="features">' in page and "Married-civ-spouse" in page


def test_the_web_form_registers_the_pipeline_too(client):
    import skops.io as sio

    from monitor.demo.datasets import credit_pipeline

    members, nonmembers = adult_sample(n=200, seed=3), adult_sample(n=200, seed=3, skip=200)
    pipeline = credit_pipeline(n_estimators=10).fit(members.drop(columns="income"), members["income"])
    client.force_login(make_user(role="admin"))
    files = {"artifact": ("credit.skops", sio.dumps(pipeline)), "members": ("m.csv", members.to_csv(index=False)),
             "nonmembers": ("n.csv", nonmembers.to_csv(index=False))}
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/models/register/", {
        "slug": "credit-form", "name": "Credit", "label_column": "income", "output_policy": "full",
        **{key: SimpleUploadedFile(name, data.encode() if isinstance(data, str) else data)
           for key, (name, data) in files.items()}})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert RegisteredModel.objects.get(slug="credit-form").schema.categorical


@pytest.mark.parametrize(("column", "value", "phrase"), [
    ("age", "forty", "'forty' is not a number"),
    ("relationship", "", "empty cell"),  # a pipeline without an imputer for it would fail: see the next test
])
def test_a_cell_the_model_cannot_take_is_named_with_row_and_column_and_nothing_is_stored(column, value, phrase):
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    members = adult_sample(n=200, seed=4).dropna().reset_index(drop=True)
    nonmembers = adult_sample(n=200, seed=4, skip=200).dropna().reset_index(drop=True)
    # No imputer, and an encoder that refuses what it has not seen: this model takes no missing value anywhere.
    strict = Pipeline([("prepare", ColumnTransformer([
        ("numbers", StandardScaler(), ["age", "hours_per_week"]),
        ("categories", OneHotEncoder(handle_unknown="error"), ["relationship", "sex"])])),
        ("model", LogisticRegression(max_iter=500))])
    columns = ["age", "hours_per_week", "relationship", "sex", "income"]
    members, nonmembers = members[columns], nonmembers[columns]
    strict.fit(members.drop(columns="income"), members["income"])
    bad = members.astype(str).copy()
    bad.loc[6, column] = value
    with pytest.raises(RegistrationError) as caught:
        register_model(slug="strict", name="Strict", label_column="income",
                       artifact=Upload(sio.dumps(strict), "strict.skops"),
                       members=Upload(bad.to_csv(index=False).encode()),
                       nonmembers=Upload(nonmembers.to_csv(index=False).encode()))
    assert caught.value.field == "members"
    assert any(d.get("row") == 7 and d.get("column") == column and phrase in d["message"]
               for d in caught.value.details), caught.value.details
    assert not RegisteredModel.objects.exists()


def test_queries_in_both_feature_forms_with_nulls_are_stored_as_sent(credit, api_as):
    model, _, _ = credit
    api = api_as(ingest_token(model=model))
    as_list = [ROW[name] for name in model.feature_names]
    unseen = {**ROW, "native_country": "Atlantis"}
    body = {"queries": [
        {"client_id": "c1", "features": as_list, "output": [0.7, 0.3]},
        {"client_id": "c1", "features": {k: v for k, v in ROW.items() if k != "occupation"}, "output": [0.7, 0.3]},
        {"client_id": "c2", "features": unseen, "output": [0.6, 0.4], "request_id": "r-1"},
    ]}
    response = api.post(f"/api/v1/models/{model.slug}/queries", body)
    assert response.status_code in (200, 201, 202), response.content
    columnar = {"columns": {"client_id": ["c3"], "features": [as_list], "output": [[0.5, 0.5]]}}
    assert api.post(f"/api/v1/models/{model.slug}/queries", columnar).status_code in (200, 201, 202)
    ndjson = json.dumps({"client_id": "c4", "features": unseen, "output": [0.5, 0.5]}).encode()
    assert api.post(f"/api/v1/models/{model.slug}/queries", raw=ndjson,
                    content_type="application/x-ndjson").status_code in (200, 201, 202)
    # The retry of a batch stores nothing twice, and counts its unseen category once.
    api.post(f"/api/v1/models/{model.slug}/queries", {"queries": body["queries"][2:]})

    stored = QueryLog.objects.filter(model=model).order_by("id")
    assert stored.count() == 5
    X = decode_vectors(list(stored.values_list("features", flat=True)), model.n_features).astype(np.float64)
    atlantis = UnseenCategory.objects.get(model=model, feature="native_country")
    values = model.schema.decode(X, model.unseen_categories())
    assert values[0] == values[1] == values[3]
    assert values[0][model.feature_names.index("occupation")] is None
    assert values[0][model.feature_names.index("workclass")] == "Private"
    assert values[2][model.feature_names.index("native_country")] == "Atlantis" and values[4] == values[2]
    assert atlantis.value == "Atlantis" and atlantis.queries == 2


@pytest.mark.parametrize(("features", "field", "phrase"), [
    ({**ROW, "age": "forty"}, "features.age", "not a number"),
    ({**ROW, "colour": "red"}, "features.colour", "unknown feature"),
    ({**ROW, "sex": True}, "features.sex", "categorical"),
    ({**ROW, "sex": 10**400}, "features.sex", "too large for a category"),  # was a 500 (OverflowError)
    ({**ROW, "sex": 1e300}, "features.sex", "too large for a category"),  # its text broke varchar(200)
    ([*ROW.values()][:9] + [10**400] + [*ROW.values()][10:], "features", "features[9] is a number too large"),
    (["41"] + [None] * 13, "features", "features[0] is str '41', not a number"),
    ([1, 2], "features", "has 2 values"),
])
def test_a_bad_mixed_query_answers_400_naming_index_and_field_and_stores_nothing(credit, api_as, features, field,
                                                                                   phrase):
    model, _, _ = credit
    good = {"client_id": "ok", "features": ROW, "output": [0.5, 0.5]}
    response = api_as(ingest_token(model=model)).post(
        f"/api/v1/models/{model.slug}/queries",
        {"queries": [good, {"client_id": "bad", "features": features, "output": [0.5, 0.5]}]})
    assert response.status_code == 400, response.content
    assert any(d["index"] == 1 and d["field"] == field and phrase in d["message"]
               for d in response.json()["details"]), response.json()
    assert not QueryLog.objects.filter(model=model).exists() and not UnseenCategory.objects.exists()


def test_a_missing_value_the_model_cannot_take_is_refused_in_queries():
    model = register_credit_pipeline(slug="strict-missing")[0]
    schema = model.schema.with_feature(0, missing_accepted=False)
    RegisteredModel.objects.filter(pk=model.pk).update(features=schema.as_list())
    model.refresh_from_db()
    from django.test import Client

    from tests.conftest import Api

    response = Api(Client(), ingest_token(model=model)).post(
        f"/api/v1/models/{model.slug}/queries",
        {"queries": [{"client_id": "a", "features": {**ROW, "age": None}, "output": [0.5, 0.5]}]})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "features.age"
    assert "does not accept missing values" in response.json()["details"][0]["message"]


def test_predict_answers_exactly_the_artifacts_own_predict_proba_on_the_raw_row(credit, api_as):
    model, pipeline, _ = credit
    rows = [ROW, {**ROW, "native_country": "Atlantis", "age": None}, {**ROW, "workclass": None, "age": 23.5}]
    response = api_as(ingest_token(model=model)).post(f"/api/v1/models/{model.slug}/predict",
                                                     {"client_id": "p1", "features": rows})
    assert response.status_code == 200, response.content
    assert np.array_equal(np.asarray(response.json()["outputs"]), np.asarray(output(pipeline, rows)))
    assert QueryLog.objects.filter(model=model, client_id="p1").count() == 3
    assert UnseenCategory.objects.get(model=model).value == "Atlantis"


def test_the_client_page_and_the_model_page_show_raw_values_and_unseen_categories(credit, api_as, client):
    model, _, _ = credit
    api_as(ingest_token(model=model)).post(f"/api/v1/models/{model.slug}/queries", {"queries": [
        {"client_id": "shown", "features": {**ROW, "native_country": "Atlantis"}, "output": [0.5, 0.5]}]})
    client.force_login(make_user(role="security"))
    page = client.get(f"/models/{model.slug}/client?id=shown").content.decode()
    assert 'workclass = "Private"' in page and 'native_country = "Atlantis"' in page
    assert "occupation = <em>missing</em>" in page and "age = 41" in page
    model_page = client.get(f"/models/{model.slug}/").content.decode()
    assert "1 value in 1 query" in model_page


def test_an_audit_of_the_pipeline_trains_reference_pipelines_on_raw_rows_and_caches_them():
    from audits import runner
    from audits.models import AuditPolicy, ReferenceCache
    from audits.reference_cache import load_cached_references
    from audits.scheduling import request_audit

    model, _, _ = register_credit_pipeline(slug="credit-audit", n=300)
    policy = AuditPolicy.objects.ensure(model)
    policy.attacks = [*policy.attacks, "label_only"]
    policy.save()
    first = runner.execute(request_audit(model, enqueue=False).pk)
    assert first.status == "done", first.error
    assert first.result["headline"]["tpr_at_fpr"]["0.01"]["value"] > 0.02  # a forest of leaf size 1 leaks
    names = {attack["name"]: attack for attack in first.result["attacks"]}
    assert {"rmia_online", "label_only"} <= set(names) and names["rmia_online"]["auc"] > 0.6
    cached = ReferenceCache.objects.filter(model=model).first()
    references = load_cached_references(model, cached.key)
    assert references is not None  # our own raw-row step is trusted in the cache we write
    reference = references.models[0]
    assert reference.steps[0][0] == "raw_rows" and [name for name, _ in reference.steps[1:]] == ["prepare", "forest"]
    second = runner.execute(request_audit(model, enqueue=False).pk)
    assert any("reused" in note for note in second.result["notes"]), second.result["notes"]
    assert second.result["headline"] == first.result["headline"]
