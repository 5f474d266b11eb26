"""POST /api/v1/models/{slug}/queries with the columnar body {"columns": {...}}: the same queries a column at a
time, stored exactly as the row form stores them, with the same errors by index and field."""
from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.ingestion.rollups import fold_rollups
from monitor.ingestion.vectors import decode_vectors
from monitor.models import ClientDayRollup, QueryLog, RollupWatermark
from tests.factories import ingest_token, query

pytestmark = pytest.mark.django_db
URL = "/api/v1/models/credit/queries"


@pytest.fixture
def api(model, api_as):
    return api_as(ingest_token(model=model))


def as_columns(rows: list[dict]) -> dict:
    names = [name for name in ("client_id", "features", "output", "ts", "request_id") if any(name in r for r in rows)]
    return {"columns": {name: [row.get(name) for row in rows] for name in names}}


def stored(model) -> list[tuple]:
    return [(r.client_id, r.ts.isoformat(), r.request_id, r.label, round(r.confidence, 6),
             decode_vectors([r.features], 4).tolist(), decode_vectors([r.outputs], 2).tolist())
            for r in QueryLog.objects.filter(model=model).order_by("request_id")]


def test_columns_store_exactly_what_rows_store(api, model):
    rows = [query(client_id=f"c{i % 3}", request_id=f"r-{i}", ts=1_796_000_000 + i * 0.25,
                  features=[40.0 + i, 5000, 5.5, -0.1], output=[0.25, 0.75]) for i in range(30)]
    rows[4]["ts"] = None  # stamped by the server
    assert api.post(URL, {"queries": rows}).json() == {"accepted": 30, "duplicates": 0}
    fold_rollups(model)
    by_rows, by_rows_days = stored(model), list(ClientDayRollup.objects.values_list("client_id", "count"))
    by_rows = [row for row in by_rows if row[2] != "r-4"]
    QueryLog.objects.all().delete()
    ClientDayRollup.objects.all().delete()
    RollupWatermark.objects.all().delete()
    for row in rows:
        row["request_id"] = row["request_id"]
    response = api.post(URL, as_columns(rows))
    assert (response.status_code, response.json()) == (201, {"accepted": 30, "duplicates": 0})
    assert [row for row in stored(model) if row[2] != "r-4"] == by_rows
    fold_rollups(model)
    assert sorted(ClientDayRollup.objects.values_list("client_id", "count")) == sorted(by_rows_days)
    # A retry of the same columns: every row a duplicate.
    assert api.post(URL, as_columns(rows)).json() == {"accepted": 0, "duplicates": 30}


def test_optional_columns_may_be_left_out(api, model):
    body = {"columns": {"client_id": ["a", "b"], "features": [[1, 2, 3, 4], [5, 6, 7, 8]], "output": [[0.1, 0.9], [1, 0]]}}
    assert api.post(URL, body).json() == {"accepted": 2, "duplicates": 0}
    assert QueryLog.objects.filter(model=model, request_id__isnull=True).count() == 2


@pytest.mark.parametrize(("change", "index", "field", "phrase"), [
    (lambda c: c["features"].__setitem__(3, [1, 2, "3", 4]), 3, "features", "features[2]"),
    (lambda c: c["features"].__setitem__(1, [1, 2, True, 4]), 1, "features", "features[2]"),
    (lambda c: c["features"].__setitem__(2, [1, 2, 3]), 2, "features", "4"),
    (lambda c: c["output"].__setitem__(0, [0.5, 1.5]), 0, "output", "[0, 1]"),
    (lambda c: c["client_id"].__setitem__(5, ""), 5, "client_id", "non-empty"),
    (lambda c: c["client_id"].__setitem__(2, None), 2, "client_id", "non-empty"),
    (lambda c: c["ts"].__setitem__(6, "yesterday"), 6, "ts", "ISO 8601"),
    (lambda c: c["request_id"].__setitem__(7, 12), 7, "request_id", "string"),
    (lambda c: c["features"].__setitem__(0, [10**400, 1, 1, 1]), 0, "features", "float32"),
])
def test_a_bad_value_is_named_by_index_and_field_and_nothing_is_stored(api, model, change, index, field, phrase):
    body = as_columns([query(request_id=f"r-{i}", ts=1_796_000_000 + i) for i in range(8)])
    change(body["columns"])
    response = api.client.post(URL, data=json.dumps(body), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 400, response.content
    details = response.json()["details"]
    assert any(d["index"] == index and d["field"] == field and phrase in d["message"] for d in details), details
    assert QueryLog.objects.count() == 0


@pytest.mark.parametrize(("columns", "field", "phrase"), [
    ({"client_id": ["a"], "features": [[1, 2, 3, 4]]}, "columns.output", "missing"),
    ({"client_id": ["a"], "features": [[1, 2, 3, 4]], "output": [[0.5, 0.5]], "label": [1]}, "columns.label", "unknown column"),
    ({"client_id": ["a", "b"], "features": [[1, 2, 3, 4]], "output": [[0.5, 0.5]]}, "columns.client_id", "2 values"),
    ({"client_id": "a", "features": [[1, 2, 3, 4]], "output": [[0.5, 0.5]]}, "columns.client_id", "must be a list"),
])
def test_columns_that_do_not_fit_together_are_refused(api, columns, field, phrase):
    response = api.post(URL, {"columns": columns})
    assert response.status_code == 400
    assert any(d["field"] == field and phrase in d["message"] for d in response.json()["details"]), response.json()


def test_columns_must_be_an_object_and_too_many_rows_is_413(api, settings):
    response = api.post(URL, {"columns": [1, 2]})
    assert response.status_code == 400 and response.json()["details"][0]["field"] == "columns"
    settings.INGEST_MAX_QUERIES = 3
    many = as_columns([query() for _ in range(4)])
    assert api.post(URL, many).status_code == 413
    assert np.isclose(QueryLog.objects.count(), 0)


def test_an_integer_past_float64_is_a_named_400_in_the_row_form_too(api):
    """Was a 500: numpy raised OverflowError converting the batch."""
    rows = [query(), query(features=[1, 10**400, 1, 1])]
    response = api.client.post(URL, data=json.dumps({"queries": rows}), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"index": 1, "field": "features", "message": "features[1] is out of float32 range"}]
    assert QueryLog.objects.count() == 0
