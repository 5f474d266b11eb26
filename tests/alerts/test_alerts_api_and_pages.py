"""Alert and channel endpoints and pages: filters, actions, validation, and roles on each."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts.lifecycle import raise_signal
from monitor.models import Alert, NotificationChannel
from tests.factories import ingest_token, make_channel, make_user, signal, user_token

pytestmark = pytest.mark.django_db

ROLES = ["admin", "security", "compliance", "viewer"]


@pytest.fixture
def alert(model):
    return raise_signal(signal(model=model, client_id="probe-1", severity="critical"))[0]


def test_alerts_filter_by_status_model_severity_and_client(api_as, model, alert):
    raise_signal(signal(model=model, client_id="other", severity="info"))
    api = api_as(user_token(role="viewer"))
    assert [a["client"] for a in api.get("/api/v1/alerts?severity=critical").json()] == ["probe-1"]
    assert [a["client"] for a in api.get("/api/v1/alerts?client=other").json()] == ["other"]
    assert len(api.get("/api/v1/alerts?model=credit&status=open").json()) == 2
    assert api.get("/api/v1/alerts?status=resolved").json() == []
    body = api.get(f"/api/v1/alerts/{alert.pk}").json()
    for key in ["id", "fingerprint", "source", "kind", "model", "client", "severity", "status", "first_seen", "last_seen",
                "occurrences", "evidence"]:
        assert key in body
    assert body["source"] == "detector" and body["model"] == "credit"


def test_bad_filters_are_named(api_as, alert):
    response = api_as(user_token(role="viewer")).get("/api/v1/alerts?status=nope&severity=loud")
    assert response.status_code == 400
    assert {d["field"] for d in response.json()["details"]} == {"status", "severity"}


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("security", 200), ("compliance", 403), ("viewer", 403)])
def test_only_security_and_admin_acknowledge(api_as, alert, role, status):
    response = api_as(user_token(role=role)).post(f"/api/v1/alerts/{alert.pk}/acknowledge", {"note": "on it"})
    assert response.status_code == status
    alert.refresh_from_db()
    assert (alert.status == "acknowledged") == (status == 200)


def test_ingestion_tokens_cannot_touch_alerts(api_as, model, alert):
    api = api_as(ingest_token(model=model))
    assert api.get("/api/v1/alerts").status_code == 403
    assert api.post(f"/api/v1/alerts/{alert.pk}/resolve", {}).status_code == 403


def test_resolve_and_wrong_state_is_409(api_as, alert):
    api = api_as(user_token(role="security"))
    body = api.post(f"/api/v1/alerts/{alert.pk}/resolve", {"note": "fixed"}).json()
    assert body["status"] == "resolved" and body["resolved_by"] and body["resolved_at"]
    again = api.post(f"/api/v1/alerts/{alert.pk}/resolve", {})
    assert again.status_code == 409 and "already resolved" in again.json()["error"]
    assert api.post(f"/api/v1/alerts/{alert.pk}/acknowledge", {}).status_code == 409


def test_mute_needs_a_future_until_and_a_reason(api_as, alert):
    api = api_as(user_token(role="security"))
    until = (timezone.now() + timedelta(hours=2)).isoformat()
    missing = api.post(f"/api/v1/alerts/{alert.pk}/mute", {"until": until})
    assert missing.status_code == 400 and any(d["field"] == "reason" for d in missing.json()["details"])
    past = api.post(f"/api/v1/alerts/{alert.pk}/mute", {"until": "2020-01-01T00:00:00Z", "reason": "x"})
    assert past.status_code == 409 and "future" in past.json()["error"]
    naive = api.post(f"/api/v1/alerts/{alert.pk}/mute", {"until": "2999-01-01T00:00:00", "reason": "x"})
    assert naive.status_code == 400
    ok = api.post(f"/api/v1/alerts/{alert.pk}/mute", {"until": until, "reason": "pen test"})
    assert ok.status_code == 200 and ok.json()["status"] == "muted" and ok.json()["mute_reason"] == "pen test"


def test_unknown_alert_is_404(api_as, db):
    assert api_as(user_token(role="admin")).post("/api/v1/alerts/999/acknowledge", {}).status_code == 404


def test_channels_api_create_list_test_delete(api_as, slack_server, db):
    api = api_as(user_token(role="admin"))
    created = api.post("/api/v1/channels", {"name": "sec slack", "kind": "slack", "target": slack_server.url,
                                            "min_severity": "critical"})
    assert created.status_code == 201, created.content
    channel = created.json()
    assert channel["enabled"] and channel["models"] is None and slack_server.url not in channel["target"]
    assert [c["name"] for c in api.get("/api/v1/channels").json()] == ["sec slack"]
    assert api.post(f"/api/v1/channels/{channel['id']}/test").json()["status"] == "queued"
    assert api.client.delete(f"/api/v1/channels/{channel['id']}", HTTP_AUTHORIZATION=f"Bearer {api.token}").status_code == 204
    assert not NotificationChannel.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "kind": "email", "target": "not-an-address"}, "target"),
    ({"name": "x", "kind": "pager", "target": "a@b.co"}, "kind"),
    ({"name": "x", "kind": "slack", "target": "hooks.slack.com/x"}, "target"),
    ({"name": "x", "kind": "email", "target": "a@b.co", "models": ["nope"]}, "models"),
    ({"name": "x", "kind": "email", "target": "a@b.co", "min_severity": "loud"}, "min_severity"),
])
def test_bad_channels_are_refused_naming_the_field(api_as, db, body, field):
    response = api_as(user_token(role="admin")).post("/api/v1/channels", body)
    assert response.status_code == 400, response.content
    assert any(field in (d["field"] or "") for d in response.json()["details"])
    assert not NotificationChannel.objects.exists()


@pytest.mark.parametrize("role", ["security", "compliance", "viewer"])
def test_only_admins_manage_channels(api_as, db, role):
    api = api_as(user_token(role=role))
    assert api.get("/api/v1/channels").status_code == 403
    assert api.post("/api/v1/channels", {"name": "x", "kind": "email", "target": "a@b.co"}).status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_alert_pages_render_for_every_role(client, alert, role):
    client.force_login(make_user(role=role))
    listing = client.get("/alerts/").content.decode()
    assert "probe-1" in listing and ("Acknowledge" in listing) == (role in ("admin", "security"))
    detail = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "Timeline" in detail and "opened" in detail


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("security", True), ("compliance", False), ("viewer", False)])
def test_page_actions_respect_roles(client, alert, role, allowed):
    client.force_login(make_user(role=role))
    response = client.post(f"/alerts/{alert.pk}/acknowledge/", {"note": "seen"})
    assert response.status_code == (302 if allowed else 403)
    assert Alert.objects.get(pk=alert.pk).status == ("acknowledged" if allowed else "open")


def test_page_mute_and_bad_action(client, alert):
    client.force_login(make_user(role="security"))
    client.post(f"/alerts/{alert.pk}/mute/", {"duration": "8h", "reason": "maintenance"})
    alert.refresh_from_db()
    assert alert.status == "muted" and alert.mute_reason == "maintenance"
    response = client.post(f"/alerts/{alert.pk}/mute/", {"duration": "forever", "reason": "x"}, follow=True)
    assert "choose a mute duration" in response.content.decode()


def test_action_get_is_not_allowed(client, alert):
    client.force_login(make_user(role="security"))
    assert client.get(f"/alerts/{alert.pk}/acknowledge/").status_code == 405


def test_page_actions_need_csrf(alert):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user(role="security"))
    assert strict.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 403


def test_channels_page_adds_and_shows_errors(client, db):
    client.force_login(make_user(role="admin"))
    bad = client.post("/channels/", {"name": "ops", "kind": "email", "target": "nope", "min_severity": "warning"})
    assert bad.status_code == 400 and "not a valid email address" in bad.content.decode()
    good = client.post("/channels/", {"name": "ops", "kind": "email", "target": "ops@example.com", "min_severity": "warning",
                                      "rate_limit_per_hour": "10", "digest": "on"})
    assert good.status_code == 302
    assert NotificationChannel.objects.get().target == "ops@example.com"


def test_empty_alert_list_says_what_will_appear(client, db):
    client.force_login(make_user(role="viewer"))
    assert "Alerts appear here when" in client.get("/alerts/").content.decode()


def test_channel_webhook_url_is_not_shown_in_full(client, db):
    make_channel(kind="slack", target="https://hooks.slack.com/services/T1/B2/very-secret-token")
    client.force_login(make_user(role="admin"))
    assert "very-secret-token" not in client.get("/channels/").content.decode()
