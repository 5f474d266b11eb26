"""The tools teams already run, each against a real local HTTP server: a webhook signed per Standard Webhooks
(verified with the standardwebhooks verifier, the same webhook-id on every retry), PagerDuty trigger →
acknowledge → resolve under one dedup key, and a Teams Adaptive Card; created through the API with bad input
refused."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.alerts.lifecycle import acknowledge, raise_signal, resolve
from monitor.alerts.outbox import deliver_due, send_test
from monitor.models import Delivery, NotificationChannel
from tests.factories import make_user, signal, user_token

pytestmark = pytest.mark.django_db

ROUTING_KEY = "R0123456789abcdef0123456789abcd"


@pytest.fixture
def admin_api(client):
    token = user_token(role="admin")

    def post(path, body):
        return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    return post


def _headers(request: dict) -> dict:
    return {name.lower(): value for name, value in request["headers"].items()}


def _drain():
    """Send what is due now and what a retry put back (the backoff is moved to now, as time passing would)."""
    for _ in range(5):
        Delivery.objects.filter(status="pending").update(next_attempt_at=Delivery.objects.first().created_at)
        deliver_due()


def test_a_webhook_is_signed_per_standard_webhooks_and_keeps_its_id_across_retries(model, admin_api, slack_server):
    created = admin_api("/api/v1/channels", {"name": "SOAR", "kind": "webhook", "target": slack_server.url,
                                              "min_severity": "info"})
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and secret not in created.json()["target"]
    assert "secret" not in NotificationChannel.objects.get().summary()  # shown once: never listed again
    slack_server.answer((503, "busy"))
    alert, _ = raise_signal(signal(model=model, severity="warning"))
    _drain()
    first, second = slack_server.received[:2]
    assert first["status"] == 503 and second["status"] == 200
    assert _headers(first)["webhook-id"] == _headers(second)["webhook-id"]  # one event, one id
    verifier = Webhook(secret)
    event = verifier.verify(second["raw"], _headers(second))
    assert event["type"] == "alert.opened" and event["data"]["id"] == alert.pk
    assert event["data"]["model"] == model.slug and event["data"]["client_id"] == "client-9"
    assert event["data"]["url"].endswith(f"/alerts/{alert.pk}/") and event["data"]["summary"]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(second["raw"].replace(b"warning", b"info"), _headers(second))
    acknowledge(alert, user=make_user(role="security"), note="looking")
    resolve(alert, note="done")
    _drain()
    types = [verifier.verify(r["raw"], _headers(r))["type"] for r in slack_server.requests]
    assert types == ["alert.opened", "alert.acknowledged", "alert.resolved"]
    assert len({_headers(r)["webhook-id"] for r in slack_server.requests}) == 3


def test_a_webhook_secret_given_by_the_admin_is_used_and_checked(model, admin_api, slack_server):
    given = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert admin_api("/api/v1/channels", {"name": "x", "kind": "webhook", "target": slack_server.url,
                                          "secret": "not-a-secret"}).status_code == 400
    assert admin_api("/api/v1/channels", {"name": "x", "kind": "slack", "target": slack_server.url,
                                          "secret": given}).status_code == 400
    created = admin_api("/api/v1/channels", {"name": "given", "kind": "webhook", "target": slack_server.url,
                                              "secret": given})
    assert created.status_code == 201 and created.json()["secret"] == given
    delivery = send_test(NotificationChannel.objects.get(name="given"))
    assert delivery.status == "sent", delivery.last_error
    [test] = slack_server.requests
    assert Webhook(given).verify(test["raw"], _headers(test))["type"] == "channel.test"


def test_pagerduty_trigger_acknowledge_resolve_share_one_dedup_key(model, admin_api, slack_server, settings):
    settings.PAGERDUTY_EVENTS_URL = slack_server.url.replace("/services/T000/B000/XXXX", "/v2/enqueue")
    assert admin_api("/api/v1/channels", {"name": "pd", "kind": "pagerduty", "target": "short"}).status_code == 400
    created = admin_api("/api/v1/channels", {"name": "pd", "kind": "pagerduty", "target": ROUTING_KEY,
                                              "min_severity": "warning"})
    assert created.status_code == 201 and ROUTING_KEY not in created.json()["target"]
    alert, _ = raise_signal(signal(model=model, severity="critical"))
    deliver_due()
    acknowledge(alert, user=make_user(role="security"))
    deliver_due()
    resolve(alert)
    deliver_due()
    events = [r["json"] for r in slack_server.requests]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {alert.fingerprint}
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    assert {r["path"] for r in slack_server.requests} == {"/v2/enqueue"}
    trigger = events[0]
    assert trigger["payload"]["severity"] == "critical" and model.slug in trigger["payload"]["summary"]
    assert trigger["links"][0]["href"].endswith(f"/alerts/{alert.pk}/")
    assert trigger["payload"]["custom_details"]["client_id"] == "client-9"
    # A 400 from PagerDuty is permanent for the event but keeps the channel; a 429 is retried.
    slack_server.answer((429, "slow down"))
    second, _ = raise_signal(signal(model=model, client_id="client-10", severity="critical"))
    _drain()
    assert slack_server.requests[-1]["json"]["dedup_key"] == second.fingerprint
    assert NotificationChannel.objects.get(name="pd").enabled


def test_teams_gets_an_adaptive_card(model, admin_api, slack_server):
    assert admin_api("/api/v1/channels", {"name": "t", "kind": "teams", "target": "ftp://x"}).status_code == 400
    assert admin_api("/api/v1/channels", {"name": "teams", "kind": "teams", "target": slack_server.url,
                                          "min_severity": "info"}).status_code == 201
    alert, _ = raise_signal(signal(model=model, severity="warning"))
    deliver_due()
    acknowledge(alert, user=make_user(role="security"))
    deliver_due()  # acknowledged goes to webhook and PagerDuty only
    [message] = [r["json"] for r in slack_server.requests]
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for block in card["body"] if block["type"] == "FactSet" for f in block["facts"]}
    assert facts["Severity"] == "warning" and facts["Model"] == model.slug and facts["Client"] == "client-9"
    assert card["actions"][0]["type"] == "Action.OpenUrl" and card["actions"][0]["url"].endswith(f"/alerts/{alert.pk}/")
    assert any(block["type"] == "TextBlock" and "client-9" not in block["text"] for block in card["body"][1:])


def test_channels_page_and_admin_create_the_new_kinds(client, slack_server, model):
    client.force_login(make_user(role="admin"))
    page = client.post("/channels/", {"name": "hook", "kind": "webhook", "target": slack_server.url,
                                      "min_severity": "warning", "rate_limit_per_hour": 30})
    assert page.status_code in (200, 302)
    channel = NotificationChannel.objects.get(name="hook")
    assert channel.signing_secret().startswith("whsec_")
    shown = client.get("/channels/").content.decode()
    assert channel.signing_secret() in shown  # once, right after creation
    assert channel.signing_secret() not in client.get("/channels/").content.decode()
    for kind in ("pagerduty", "teams", "webhook"):
        assert f'value="{kind}"' in shown
    call_command("check")


def test_a_webhook_channel_added_in_the_django_admin_gets_a_secret_shown_once(client, slack_server):
    admin_user = make_user(role="admin", username="root-admin")
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    response = client.post("/admin/monitor/notificationchannel/add/", {
        "name": "soar", "kind": "webhook", "target": slack_server.url, "min_severity": "warning", "all_models": "on",
        "enabled": "on", "rate_limit_per_hour": 30}, follow=True)
    assert response.status_code == 200
    channel = NotificationChannel.objects.get(name="soar")
    secret = channel.signing_secret()
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert send_test(channel).status == "sent"
    assert Webhook(secret).verify(slack_server.requests[0]["raw"], _headers(slack_server.requests[0]))
