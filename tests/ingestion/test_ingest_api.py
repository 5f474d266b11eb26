"""POST /api/v1/models/{slug}/queries: atomic, idempotent, every bad input named."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor.ingestion.rollups import fold_rollups
from monitor.ingestion.vectors import decode_vectors
from monitor.models import QueryLog, QueryRollup
from tests.factories import ingest_token, query

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(model, api_as):
    return api_as(ingest_token(model=model))


URL = "/api/v1/models/credit/queries"


def test_valid_batch_is_stored_with_float32_vectors_and_rollup(api, model):
    rows = [query(client_id=f"c{i % 3}", ts="2026-11-28T10:00:30Z") for i in range(9)]
    rows[0]["features"] = [1.5, 2.25, -3.0, 4.0]
    response = api.post(URL, {"queries": rows})
    assert response.status_code == 201, response.content
    assert response.json() == {"accepted": 9, "duplicates": 0}
    stored = QueryLog.objects.filter(model=model).order_by("id")
    assert stored.count() == 9
    first = stored.first()
    assert decode_vectors([first.features], 4).tolist() == [[1.5, 2.25, -3.0, 4.0]]
    assert first.label == 1 and math.isclose(first.confidence, 0.7, rel_tol=1e-6)
    assert not QueryRollup.objects.filter(model=model).exists()  # folded from the log, not in the request
    assert fold_rollups(model).queries == 9
    rollup = {r.client_id: r.count for r in QueryRollup.objects.filter(model=model)}
    assert rollup == {"c0": 3, "c1": 3, "c2": 3}
    assert fold_rollups(model).queries == 0  # each row is counted once


def test_ndjson_body_is_accepted(api, model):
    body = "\n".join(json.dumps(query(client_id=f"n{i}")) for i in range(3)).encode()
    response = api.post(URL, raw=body, content_type="application/x-ndjson")
    assert response.status_code == 201, response.content
    assert QueryLog.objects.filter(model=model).count() == 3


@pytest.mark.parametrize(
    ("row", "field", "phrase"),
    [
        (query(features=[1.0, 2.0, 3.0]), "features", "has 3 values; the model has 4"),
        (query(features=[1.0, float("nan"), 3.0, 4.0]), "features", "NaN and infinity are not allowed"),
        (query(features=[1.0, float("inf"), 3.0, 4.0]), "features", "NaN and infinity are not allowed"),
        (query(features=[1.0, "2", 3.0, 4.0]), "features", "str '2', not a number"),
        (query(features=[1.0, True, 3.0, 4.0]), "features", "bool True, not a number"),
        (query(output=[0.5]), "output", "has 1 values; the model has 2"),
        (query(output=[1.5, -0.5]), "output", "probabilities must lie in [0, 1]"),
        (query(ts="yesterday"), "ts", "not an ISO 8601 timestamp"),
        (query(ts="2026-11-28T10:00:00"), "ts", "has no timezone"),
        (query(ts="2999-01-01T00:00:00Z"), "ts", "is in the future"),
        (query(client_id=""), "client_id", "non-empty string"),
        (query(client_id="x" * 129), "client_id", "at most 128"),
        (query(request_id=7), "request_id", "non-empty string"),
        (query(colour="red"), "colour", "unknown field"),
    ],
)
def test_each_bad_row_is_named_and_the_batch_stores_nothing(api, model, row, field, phrase):
    good = [query(client_id="fine") for _ in range(3)]
    response = api.post(URL, {"queries": [*good, row]})
    assert response.status_code == 400, response.content
    body = response.json()
    assert "nothing was stored" in body["error"]
    [detail] = body["details"]
    assert detail["index"] == 3 and detail["field"] == field
    assert phrase in detail["message"]
    assert QueryLog.objects.count() == 0 and QueryRollup.objects.count() == 0


def test_unknown_model_is_404_for_an_admin(api_as, model):
    from tests.factories import user_token

    response = api_as(user_token(role="admin")).post("/api/v1/models/nope/queries", {"queries": [query()]})
    assert response.status_code == 404
    assert "unknown model 'nope'" in response.json()["error"]


def test_body_that_is_not_json_is_a_clear_400(api):
    response = api.post(URL, raw=b'{"queries": [', content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert "line 1" in response.json()["details"][0]["message"]


def test_missing_queries_key_and_empty_batch(api):
    assert "queries" in api.post(URL, {"rows": []}).json()["error"]
    response = api.post(URL, {"queries": []})
    assert response.status_code == 400 and "empty" in response.json()["error"]


def test_too_many_queries_is_413(api, settings):
    settings.INGEST_MAX_QUERIES = 5
    response = api.post(URL, {"queries": [query() for _ in range(6)]})
    assert response.status_code == 413
    assert "at most 5 per request" in response.json()["error"]
    assert QueryLog.objects.count() == 0


def test_oversize_body_is_413_before_parsing(api, settings):
    settings.INGEST_MAX_BYTES = 1000
    response = api.post(URL, {"queries": [query() for _ in range(50)]})
    assert response.status_code == 413
    assert "the limit is 1,000 bytes" in response.json()["error"]
    assert QueryLog.objects.count() == 0


def test_unsupported_content_type_is_415(api):
    response = api.post(URL, raw=b"a,b", content_type="text/csv")
    assert response.status_code == 415


def test_retry_with_request_ids_stores_each_query_once(api, model):
    rows = [query(request_id=f"r-{i}", client_id="retrier") for i in range(5)]
    assert api.post(URL, {"queries": rows}).json() == {"accepted": 5, "duplicates": 0}
    # A retry of the whole batch plus two new rows, one of them repeated within the batch.
    retry = rows + [query(request_id="r-5"), query(request_id="r-5"), query()]
    assert api.post(URL, {"queries": retry}).json() == {"accepted": 2, "duplicates": 6}
    assert QueryLog.objects.filter(model=model).count() == 7
    fold_rollups(model)
    assert sum(r.count for r in QueryRollup.objects.filter(model=model)) == 7


def test_epoch_timestamps_are_accepted(api, model):
    import time

    response = api.post(URL, {"queries": [query(ts=time.time() - 60)]})
    assert response.status_code == 201
    stored = QueryLog.objects.get(model=model)
    assert abs(stored.ts.timestamp() - (time.time() - 60)) < 5


def test_float32_overflow_is_refused(api):
    response = api.post(URL, {"queries": [query(features=[1e39, 0.0, 0.0, 0.0])]})
    assert response.status_code == 400
    assert "float32" in response.json()["details"][0]["message"]
    assert QueryLog.objects.count() == 0


def test_vectors_round_trip_through_the_log(api, model):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 4)).astype(np.float32)
    rows = [query(features=[float(v) for v in f]) for f in features]
    assert api.post(URL, {"queries": rows}).status_code == 201
    blobs = list(QueryLog.objects.filter(model=model).order_by("id").values_list("features", flat=True))
    assert np.array_equal(decode_vectors(blobs, 4), features)
