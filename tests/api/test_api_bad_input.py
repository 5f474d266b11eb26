"""Inputs the API fuzz stage (tests/fuzz) found mishandled, kept as plain tests: each must be a 4xx JSON error
naming what is wrong, never a 500, and must change nothing."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client

from monitor.alerts.lifecycle import raise_signal
from monitor.models import Alert, NotificationChannel
from monitor.trail.models import TrailEntry
from tests.factories import make_user, signal, user_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(model):
    return raise_signal(signal(model=model, client_id="probe-1", severity="critical"))[0]


def assert_error(response, status: int, *, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"].strip(), body
    if field is not None:
        assert field in {d["field"] for d in body["details"]}, body
    return body


def test_the_openapi_document_names_the_json_error_and_401_on_every_operation():
    browser = Client()
    browser.force_login(make_user(role="viewer"))
    document = browser.get("/api/v1/openapi.json").json()
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "details"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "400" in responses, (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_a_path_id_that_is_not_a_number_is_a_400_the_schema_documents(api_as, alert):
    browser = Client()
    browser.force_login(make_user(role="viewer"))
    responses = browser.get("/api/v1/openapi.json").json()["paths"]["/api/v1/alerts/{alert_id}"]["get"]["responses"]
    assert "400" in responses
    response = api_as(user_token(role="viewer")).get("/api/v1/alerts/not-a-number")
    assert_error(response, 400, field="alert_id")


@pytest.mark.parametrize("name", ["model", "client"])
def test_a_nul_character_in_an_alert_filter_is_a_400_naming_the_filter(api_as, alert, name):
    response = api_as(user_token(role="viewer")).get(f"/api/v1/alerts?{name}=probe%00")
    assert_error(response, 400, field=name)


def test_an_offset_beyond_what_the_database_can_count_is_a_400(api_as, alert):
    api = api_as(user_token(role="viewer"))
    assert_error(api.get(f"/api/v1/alerts?offset={10**20}"), 400, field="offset")
    assert api.get("/api/v1/alerts?offset=1").json() == []


@pytest.mark.parametrize("path", ["/api/v1/models/credit%00", "/api/v1/models/credit%00/audits"])
def test_a_nul_character_in_a_model_slug_is_an_unknown_model(api_as, model, path):
    body = assert_error(api_as(user_token(role="viewer")).get(path), 404)
    assert "unknown model" in body["error"]


@pytest.mark.parametrize(("action", "payload", "field"), [
    ("acknowledge", {"note": "on it\x00"}, "note"),
    ("resolve", {"note": "\x00"}, "note"),
    ("mute", {"until": "2099-01-01T00:00:00Z", "reason": "noisy\x00"}, "reason"),
])
def test_a_nul_character_in_a_note_or_reason_is_a_400_and_the_alert_is_untouched(api_as, alert, action, payload, field):
    response = api_as(user_token(role="security")).post(f"/api/v1/alerts/{alert.pk}/{action}", payload)
    assert_error(response, 400, field=field)
    assert Alert.objects.get(pk=alert.pk).status == "open"


@pytest.mark.parametrize("body", ["true", "[1]", '"on it"', "5"])
@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_acknowledge_or_resolve_body_that_is_not_an_object_is_refused(api_as, alert, action, body):
    response = api_as(user_token(role="security")).post(f"/api/v1/alerts/{alert.pk}/{action}", raw=body.encode())
    assert_error(response, 400)
    assert Alert.objects.get(pk=alert.pk).status == "open"


def test_an_unknown_field_in_a_body_is_a_400_naming_it(api_as, alert):
    response = api_as(user_token(role="security")).post(
        f"/api/v1/alerts/{alert.pk}/mute", {"until": "2099-01-01T00:00:00Z", "reason": "noisy", "silence": True})
    assert_error(response, 400, field="silence")
    assert Alert.objects.get(pk=alert.pk).status == "open"


def test_an_empty_acknowledge_body_still_acknowledges(api_as, alert):
    response = api_as(user_token(role="security")).post(f"/api/v1/alerts/{alert.pk}/acknowledge", raw=b"")
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"


@pytest.mark.parametrize(("payload", "field"), [
    ({"name": "ops\x00", "kind": "email", "target": "ops@example.com"}, "name"),
    ({"name": "ops", "kind": "email", "target": "ops@example.com", "models": ["credit\x00"]}, "models"),
])
def test_a_nul_character_in_a_channel_is_a_400_and_creates_nothing(api_as, model, payload, field):
    response = api_as(user_token(role="admin")).post("/api/v1/channels", payload)
    body = assert_error(response, 400)
    assert any(str(d["field"]).startswith(field) for d in body["details"]), body
    assert not NotificationChannel.objects.exists()


@pytest.mark.parametrize(("start", "end"), [
    ("0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00Z"),  # before year 1 in UTC
    ("2026-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00"),  # after year 9999 in UTC
])
def test_an_evidence_period_outside_the_calendar_in_utc_is_a_400(api_as, model, start, end):
    response = api_as(user_token(role="compliance")).get(
        f"/api/v1/models/credit/evidence.zip?start={quote(start)}&end={quote(end)}")
    assert_error(response, 400, field="start")


@pytest.mark.parametrize(("query", "field", "phrase"), [
    ("since=0001-01-01T00:00:00%2B14:00", "since", "years 1 to 9999"),  # before year 1 in UTC
    ("since=2026-01-01T00:00:00Z&until=9999-12-31T23:59:59-14:00", "until", "years 1 to 9999"),
    ("since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00", "until", "timezone"),
    ("since=2026-01-01T00:00:00", "since", "timezone"),
])
def test_an_alert_export_outside_the_calendar_in_utc_or_without_a_timezone_is_a_400(api_as, model, query, field,
                                                                                   phrase):
    response = api_as(user_token(role="security")).get(f"/api/v1/alerts/export?{query}")
    body = assert_error(response, 400, field=field)
    assert phrase in str(body["details"]), body
    assert not TrailEntry.objects.filter(action="alerts.exported").exists()
