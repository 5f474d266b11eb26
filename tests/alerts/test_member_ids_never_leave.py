"""Training-member ids never leave the product: an alert whose evidence names members goes out by email, Slack, the
signed webhook, PagerDuty and Teams (each to a real local server) and in the SIEM export saying how many members it
names and linking back to the alert, where the roles that may see the ids read them — never with the ids."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts.lifecycle import raise_signal
from monitor.alerts.outbox import deliver_due
from monitor.models import Alert, Delivery
from tests.factories import make_channel, signal, user_token

pytestmark = pytest.mark.django_db

ROUTING_KEY = "R0123456789abcdef0123456789abcd"
# Distinctive record ids, at the top of the evidence, among the most exposed and inside a folded detector's evidence.
HIT_IDS = ["person-0001", "person-0002", "person-9001"]
EVIDENCE = {"n_members_hit": 3, "n_regions": 40, "member_ids": HIT_IDS, "most_exposed_member_ids": HIT_IDS[:2],
            "signals": {"near_duplicate_sweep": {"score": 9.0, "client_id": "probe-2",
                                                 "evidence": {"member_ids": HIT_IDS[1:]}}}}


def leaked(text: str) -> list[str]:
    return [record_id for record_id in HIT_IDS if record_id in text]


def raise_alert(model) -> Alert:
    alert, _ = raise_signal(signal(model=model, kind="training_proximity", client_id="probe-1", severity="critical",
                                   evidence=EVIDENCE))
    return alert


def sent(slack_server) -> str:
    return "\n".join(request["raw"].decode() for request in slack_server.requests)


def test_email_names_how_many_members_and_links_back_without_their_ids(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    alert = raise_alert(model)
    deliver_due()
    [message] = smtp_server.messages
    parts = "\n".join(part.get_content() for part in message.walk() if not part.is_multipart())
    assert leaked(message.as_string()) == [] and leaked(parts) == []
    assert "n_member_ids: 3" in parts and f"/alerts/{alert.pk}/" in parts


def test_slack_names_how_many_members_and_links_back_without_their_ids(model, slack_server):
    make_channel(kind="slack", target=slack_server.url)
    alert = raise_alert(model)
    deliver_due()
    assert len(slack_server.requests) == 1 and leaked(sent(slack_server)) == []
    assert "n_member_ids: 3" in sent(slack_server) and f"/alerts/{alert.pk}/" in sent(slack_server)


def test_the_webhook_event_counts_the_members_and_links_back_without_their_ids(model, slack_server):
    make_channel(kind="webhook", target=slack_server.url)
    alert = raise_alert(model)
    deliver_due()
    [request] = slack_server.requests
    assert leaked(request["raw"].decode()) == []
    data = request["json"]["data"]
    assert data["evidence"]["n_member_ids"] == 3 and data["evidence"]["n_most_exposed_member_ids"] == 2
    assert data["evidence"]["signals"]["near_duplicate_sweep"]["evidence"] == {"n_member_ids": 2}
    assert data["url"].endswith(f"/alerts/{alert.pk}/")


def test_pagerduty_counts_the_members_and_links_back_without_their_ids(model, slack_server, settings):
    settings.PAGERDUTY_EVENTS_URL = slack_server.url
    make_channel(kind="pagerduty", target=ROUTING_KEY)
    alert = raise_alert(model)
    deliver_due()
    [request] = slack_server.requests
    assert request["json"]["event_action"] == "trigger" and leaked(request["raw"].decode()) == []
    assert "n_member_ids: 3" in request["json"]["payload"]["custom_details"]["evidence"]
    assert request["json"]["links"][0]["href"].endswith(f"/alerts/{alert.pk}/")


def test_teams_counts_the_members_and_links_back_without_their_ids(model, slack_server):
    make_channel(kind="teams", target=slack_server.url)
    alert = raise_alert(model)
    deliver_due()
    [request] = slack_server.requests
    assert leaked(request["raw"].decode()) == []
    card = request["json"]["attachments"][0]["content"]
    assert any(block.get("text") == "n_member_ids: 3" for block in card["body"])
    assert card["actions"][0]["url"].endswith(f"/alerts/{alert.pk}/")


def test_every_transport_renders_the_same_alert_without_member_ids(model, smtp_server, slack_server, settings):
    """All five at once, and a raise (escalation) as well as the opening: nothing sent at any step names a member."""
    settings.PAGERDUTY_EVENTS_URL = slack_server.url
    for kind, target in (("email", "sec@example.com"), ("slack", slack_server.url), ("webhook", slack_server.url),
                         ("pagerduty", ROUTING_KEY), ("teams", slack_server.url)):
        make_channel(kind=kind, target=target, name=kind)
    raise_signal(signal(model=model, kind="training_proximity", client_id="probe-1", severity="warning",
                        evidence=EVIDENCE))
    raise_alert(model)  # the same incident raised to critical
    deliver_due()
    assert {delivery.event for delivery in Delivery.objects.all()} == {"opened", "escalated"}
    assert Delivery.objects.exclude(status="sent").count() == 0
    assert leaked(sent(slack_server)) == []
    assert all(leaked(message.as_string()) == [] for message in smtp_server.messages)


@pytest.mark.parametrize("format", ["ocsf", "csv"])
def test_the_siem_export_counts_the_members_without_their_ids(client, model, format):  # noqa: A002
    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    alert = raise_alert(model)
    response = client.get("/api/v1/alerts/export", {"format": format, "since": since},
                          HTTP_AUTHORIZATION=f"Bearer {user_token(role='security')}")
    assert response.status_code == 200, response.content
    text = response.content.decode()
    assert leaked(text) == [] and f"/alerts/{alert.pk}/" in text and "n_member_ids: 3" in text
    if format == "ocsf":
        [finding] = [json.loads(line) for line in text.splitlines()]
        assert finding["evidences"][0]["data"]["evidence"]["n_member_ids"] == 3
