"""A channel's secret target is encrypted at rest (issue 27, low finding "Slack/Teams URLs stored in plain text"):
Slack, Teams and webhook URLs and PagerDuty routing keys are stored under the data key, email addresses stay
readable; delivery still reaches the receiver, and after creation the API and the admin show a URL's scheme and
host only."""
from __future__ import annotations

import pytest
from django.db import connection

from monitor.alerts.lifecycle import raise_signal
from monitor.alerts.outbox import deliver_due
from monitor.models import NotificationChannel
from tests.factories import make_channel, make_user, signal, user_token

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/s3cr3tSlackPathPart"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def raw_target(channel: NotificationChannel) -> str:
    """The target column as the database holds it."""
    table, column = channel._meta.db_table, channel._meta.get_field("target").column
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [channel.pk])  # noqa: S608
        [(value,)] = cursor.fetchall()
    return value


@pytest.mark.parametrize(("kind", "target", "secret_part"), [
    ("slack", SLACK_URL, "hooks.slack.com"),
    ("teams", "https://teams.example.invalid/webhookb2/t3amsS3cret", "t3amsS3cret"),
    ("webhook", "https://soar.example.invalid/hooks/w3bh00kS3cret", "w3bh00kS3cret"),
    ("pagerduty", ROUTING_KEY, ROUTING_KEY),
])
def test_a_secret_target_is_not_in_the_raw_column(kind, target, secret_part):
    channel = make_channel(kind=kind, target=target)
    stored = raw_target(channel)
    assert secret_part not in stored and target not in stored and stored.startswith("fernet:")
    assert NotificationChannel.objects.get(pk=channel.pk).target == target


def test_email_addresses_stay_readable_in_the_column():
    channel = make_channel(kind="email", target="soc@example.org, ciso@example.org")
    assert raw_target(channel) == "soc@example.org, ciso@example.org"


def test_saving_a_channel_again_keeps_its_target_encrypted():
    channel = make_channel(kind="slack", target=SLACK_URL)
    channel = NotificationChannel.objects.get(pk=channel.pk)
    channel.min_severity = "critical"
    channel.save()
    assert "hooks.slack.com" not in raw_target(channel)
    assert NotificationChannel.objects.get(pk=channel.pk).target == SLACK_URL


def test_an_encrypted_slack_target_still_delivers_through_the_local_stand_in(model, slack_server):
    channel = make_channel(kind="slack", target=slack_server.url)
    assert "/services/T000/B000/XXXX" not in raw_target(channel)
    raise_signal(signal(model=model))
    assert deliver_due() == {"sent": 1}
    [request] = slack_server.requests
    assert request["path"] == "/services/T000/B000/XXXX" and request["json"]["blocks"]


def test_the_api_shows_a_url_channel_by_scheme_and_host_only(api_as):
    api = api_as(user_token(role="admin"))
    created = api.post("/api/v1/channels", {"name": "oncall", "kind": "slack", "target": SLACK_URL})
    assert created.status_code == 201, created.content
    assert created.json()["target"] == "https://hooks.slack.com/…"
    [listed] = api.get("/api/v1/channels").json()
    assert listed["target"] == "https://hooks.slack.com/…"


@pytest.fixture
def site_admin(client):
    admin = make_user(role="admin", username="site-admin")
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    return admin


def test_the_admin_never_shows_the_url_after_creation(client, site_admin):
    channel = make_channel(kind="slack", target=SLACK_URL)
    for url in ("/admin/monitor/notificationchannel/", f"/admin/monitor/notificationchannel/{channel.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200
        assert "s3cr3tSlackPathPart" not in page.content.decode(), url
    assert "https://hooks.slack.com/…" in client.get(f"/admin/monitor/notificationchannel/{channel.pk}/change/"
                                                     ).content.decode()


def test_saving_the_admin_form_without_a_new_target_keeps_the_old_one(client, site_admin):
    channel = make_channel(kind="slack", target=SLACK_URL)
    url = f"/admin/monitor/notificationchannel/{channel.pk}/change/"
    response = client.post(url, {"name": "renamed", "kind": "slack", "target": "", "min_severity": "critical",
                                 "all_models": "on", "enabled": "on", "rate_limit_per_hour": "30", "digest": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    assert (channel.name, channel.min_severity, channel.target) == ("renamed", "critical", SLACK_URL)


def test_changing_the_kind_in_the_admin_needs_a_new_target(client, site_admin):
    channel = make_channel(kind="slack", target=SLACK_URL)
    url = f"/admin/monitor/notificationchannel/{channel.pk}/change/"
    response = client.post(url, {"name": "x", "kind": "teams", "target": "", "min_severity": "critical",
                                 "all_models": "on", "enabled": "on", "rate_limit_per_hour": "30", "digest": "on"})
    assert response.status_code == 200 and "a new kind needs its target" in response.content.decode()
    channel.refresh_from_db()
    assert (channel.kind, channel.target) == ("slack", SLACK_URL)
