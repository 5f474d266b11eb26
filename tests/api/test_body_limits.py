"""Bodies the API refuses before it reads them whole: JSON nested deeper than MAX_JSON_DEPTH (a 400 naming the
limit, never a RecursionError's 500) and NDJSON batches longer than INGEST_MAX_QUERIES (a 413 at the first line
past the cap, the lines after it never parsed). Each refusal stores nothing."""
from __future__ import annotations

import json

import pytest

from monitor.api.bodies import MAX_JSON_DEPTH, nesting_depth
from monitor.models import NotificationChannel, QueryLog
from tests.factories import ingest_token, query, user_token

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/credit/queries"
DEEP = 100_000


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def features_nested(depth: int) -> dict:
    """A query row whose features reach `depth` levels in all ({"queries": [{"features": [...]}]} is three)."""
    return query(features=json.loads(nested(depth - 3, "1.0")))


def assert_too_deep(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert f"nests deeper than {MAX_JSON_DEPTH} levels" in body["error"], body
    return body


@pytest.fixture
def api(model, api_as):
    return api_as(ingest_token(model=model))


@pytest.mark.parametrize("raw", [
    nested(DEEP).encode(),
    ('{"a":' * DEEP + "1" + "}" * DEEP).encode(),
    ('{"queries": [{"client_id": "c", "output": [0.3, 0.7], "features": ' + nested(DEEP) + "}]}").encode(),
    # orjson stops at NaN and the standard library, which follows nesting by recursion, parses the rest
    ('{"queries": [{"features": [NaN]}], "more": ' + nested(5_000) + "}").encode(),
], ids=["arrays", "objects", "inside-a-row", "after-a-nan"])
def test_a_query_batch_nested_thousands_of_levels_deep_is_a_400_and_stores_nothing(api, raw):
    assert_too_deep(api.post(URL, raw=raw))
    assert QueryLog.objects.count() == 0


def test_a_deeply_nested_ndjson_line_is_a_400_naming_the_line(api):
    lines = [json.dumps(query()), "", json.dumps(query()), '{"a": ' + nested(DEEP) + "}"]
    body = assert_too_deep(api.post(URL, raw="\n".join(lines).encode(), content_type="application/x-ndjson"))
    assert "NDJSON line 4" in body["error"]
    assert QueryLog.objects.count() == 0


def test_a_deeply_nested_predict_body_is_a_400_and_logs_nothing(api):
    raw = ('{"client_id": "c", "features": ' + nested(DEEP) + "}").encode()
    assert_too_deep(api.post("/api/v1/models/credit/predict", raw=raw))
    assert QueryLog.objects.count() == 0


@pytest.mark.parametrize("method", ["post", "patch"])
def test_the_endpoints_ninja_parses_refuse_deep_nesting_by_name(client, model, method):
    admin = {"HTTP_AUTHORIZATION": f"Bearer {user_token(role='admin')}"}
    path = "/api/v1/channels" if method == "post" else "/api/v1/models/credit"
    raw = '{"name": "deep", "kind": "email", "target": ' + nested(DEEP, '"a@example.com"') + "}"
    response = getattr(client, method)(path, data=raw.encode(), content_type="application/json", **admin)
    assert_too_deep(response)
    assert not NotificationChannel.objects.exists()


def test_nesting_up_to_the_limit_reaches_validation_and_one_more_level_does_not(api):
    at_limit = api.post(URL, {"queries": [features_nested(MAX_JSON_DEPTH)]})
    assert at_limit.status_code == 400
    assert "nests deeper" not in at_limit.json()["error"]
    assert at_limit.json()["details"][0]["field"] == "features"
    assert_too_deep(api.post(URL, {"queries": [features_nested(MAX_JSON_DEPTH + 1)]}))


def test_brackets_inside_strings_are_not_nesting(api):
    response = api.post(URL, {"queries": [query(client_id="[{" * 60), query(client_id='\\"]' + "[" * 100)]})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(("raw", "depth"), [
    (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4), (b'["[[[", "\\\\", [["]]"]]]', 3),
    (b'["\\"[[[", 1]', 1), (b'"unterminated [[[', 0), (b"1", 0),
])
def test_nesting_depth_counts_brackets_outside_strings(raw, depth):
    assert nesting_depth(raw) == depth


# --- NDJSON: the row cap before the parse -------------------------------------------------------------------------

def ndjson(*lines: str) -> bytes:
    return "\n".join(lines).encode()


def test_an_ndjson_batch_one_line_past_the_cap_is_a_413_before_the_line_is_parsed(api, settings):
    settings.INGEST_MAX_QUERIES = 5
    rows = [json.dumps(query(client_id=f"n{i}")) for i in range(5)]
    response = api.post(URL, raw=ndjson(*rows, "{this line is never parsed", *rows), content_type="application/x-ndjson")
    assert response.status_code == 413, response.content
    body = response.json()
    assert body["error"] == "the batch has more than 5 queries; at most 5 per request"
    assert body["details"] == [{"field": "queries", "message": "at most 5 queries"}]
    assert QueryLog.objects.count() == 0


def test_blank_lines_do_not_count_towards_the_ndjson_cap(api, model, settings):
    settings.INGEST_MAX_QUERIES = 3
    rows = [json.dumps(query(client_id=f"n{i}")) for i in range(3)]
    response = api.post(URL, raw=ndjson("", rows[0], "  ", rows[1], "", rows[2], "", ""),
                        content_type="application/x-ndjson")
    assert response.status_code == 201, response.content
    assert QueryLog.objects.filter(model=model).count() == 3


def test_a_bad_ndjson_line_within_the_cap_is_still_named_by_its_line(api):
    response = api.post(URL, raw=ndjson(json.dumps(query()), "", "{oops", json.dumps(query())),
                        content_type="application/x-ndjson")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "the body is not valid JSON (NDJSON line 3)"
    assert QueryLog.objects.count() == 0
