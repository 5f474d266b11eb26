""""Send a test message" queues it for the outbox worker: no web request waits on a receiver, and the outcome is the
channel's delivery like any other message's. A target the guard refuses is a 400 naming the field and why."""
from __future__ import annotations

import time

import pytest

from monitor.alerts.outbox import deliver_due
from monitor.models import Delivery, DeliveryEvent, DeliveryStatus
from monitor.platform import broker
from tests.factories import make_channel, make_user, user_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    names: list[str] = []
    monkeypatch.setattr(broker, "publish", lambda task, *args: names.append(task) or True)
    return names


def test_the_api_queues_the_test_and_the_outbox_sends_it(api_as, slack_server, published,
                                                         django_capture_on_commit_callbacks):
    channel = make_channel(kind="slack", target=slack_server.url)
    api = api_as(user_token(role="admin"))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/channels/{channel.pk}/test")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert slack_server.received == []  # nothing left during the request
    assert published == ["monitor.tasks.deliver_notifications"]
    delivery = channel.deliveries.get()
    assert delivery.pk == body["delivery"] and delivery.event == DeliveryEvent.TEST
    assert delivery.status == DeliveryStatus.PENDING
    assert deliver_due() == {"sent": 1}
    assert channel.deliveries.get().status == DeliveryStatus.SENT
    assert "test message" in slack_server.requests[0]["json"]["text"].lower()


def test_the_page_answers_at_once_even_when_the_receiver_is_slow(client, slack_server):
    slack_server.delay = 5
    channel = make_channel(kind="slack", target=slack_server.url)
    client.force_login(make_user(role="admin"))
    started = time.monotonic()
    response = client.post(f"/channels/{channel.pk}/test/", follow=True)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "queued" in response.content.decode()
    assert elapsed < 1.0
    assert slack_server.received == []
    assert channel.deliveries.get().status == DeliveryStatus.PENDING


def test_a_failed_test_shows_on_the_channel(api_as, slack_server):
    slack_server.answer((404, "no_service"))
    channel = make_channel(kind="slack", target=slack_server.url)
    api = api_as(user_token(role="admin"))
    assert api.post(f"/api/v1/channels/{channel.pk}/test").status_code == 202
    assert deliver_due() == {"failed": 1}
    [shown] = api.get("/api/v1/channels").json()
    assert not shown["enabled"] and "404 Not Found" in shown["disabled_reason"]
    assert "no_service" not in shown["disabled_reason"]  # the receiver's words are not repeated
    assert channel.deliveries.get().status == DeliveryStatus.FAILED


def test_a_target_refused_since_it_was_stored_is_a_400_naming_the_target(api_as, client, slack_server, settings):
    channel = make_channel(kind="slack", target=slack_server.url)
    settings.OUTBOUND_ALLOW_LOOPBACK = False  # as after ALLOWED_HOSTS names a public host
    response = api_as(user_token(role="admin")).post(f"/api/v1/channels/{channel.pk}/test")
    assert response.status_code == 400
    [problem] = response.json()["details"]
    assert problem["field"] == "target" and "loopback" in problem["message"] and "not allowed" in problem["message"]
    client.force_login(make_user(role="admin", username="page-admin"))
    page = client.post(f"/channels/{channel.pk}/test/")
    assert page.status_code == 400 and "loopback" in page.content.decode()
    assert not Delivery.objects.exists() and slack_server.received == []


def test_a_disabled_channel_is_not_tested_until_enabled(api_as, slack_server):
    channel = make_channel(kind="slack", target=slack_server.url)
    channel.disable("Slack answered 404 Not Found: the webhook no longer exists")
    response = api_as(user_token(role="admin")).post(f"/api/v1/channels/{channel.pk}/test")
    assert response.status_code == 400
    [problem] = response.json()["details"]
    assert problem["field"] == "enabled" and "enable it" in problem["message"]
    assert not Delivery.objects.exists()
