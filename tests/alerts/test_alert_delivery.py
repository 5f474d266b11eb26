"""Alerts reach people exactly once: real SMTP and a real HTTP server standing in for Slack."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts.lifecycle import acknowledge, housekeeping, mute, raise_signal, resolve
from monitor.alerts.outbox import deliver_due, queue_digests, send_test
from monitor.models import Alert, Delivery, NotificationChannel
from tests.factories import make_channel, make_model, make_user, signal

pytestmark = pytest.mark.django_db


def later(**delta):
    return timezone.now() + timedelta(**delta)


def test_an_alert_reaches_each_matching_channel_once(model, smtp_server, slack_server):
    make_channel(kind="email", target="sec@example.com, oncall@example.com")
    make_channel(kind="slack", target=slack_server.url)
    make_channel(kind="email", target="ciso@example.com", min_severity="critical", name="only critical")
    make_channel(kind="email", target="other@example.com", models=[make_model(slug="other").slug], name="other model")
    alert, created = raise_signal(signal(model=model, severity="warning"))
    assert created
    deliver_due()
    deliver_due()  # a second pass sends nothing more
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["X-Rcpt-To"] == "sec@example.com, oncall@example.com"
    assert message["Subject"].strip().startswith("[WARNING]") and "credit" in message["Subject"]
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert f"/alerts/{alert.pk}/" in parts["text/plain"] and f"/alerts/{alert.pk}/" in parts["text/html"]
    assert "client-9" in parts["text/plain"]
    [slack] = slack_server.requests
    blocks = slack["json"]["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks) <= 50
    assert any(b["type"] == "actions" and b["elements"][0]["url"].endswith(f"/alerts/{alert.pk}/") for b in blocks)
    assert slack["json"]["text"]  # plain-text fallback
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)


def test_a_repeat_updates_the_alert_and_does_not_notify_again(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    first, _ = raise_signal(signal(model=model, evidence={"queries": 10}))
    again, created = raise_signal(signal(model=model, evidence={"queries": 25}))
    deliver_due()
    assert not created and again.pk == first.pk
    again.refresh_from_db()
    assert again.occurrences == 2 and again.evidence == {"queries": 25}
    assert len(smtp_server.messages) == 1 and Alert.objects.count() == 1


def test_a_severity_rise_is_an_event_and_notifies(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    raise_signal(signal(model=model, severity="warning"))
    alert, _ = raise_signal(signal(model=model, severity="critical"))
    deliver_due()
    # Messages show the alert as it is when they are sent; the second one says what changed.
    assert [m["Subject"].strip().startswith("[CRITICAL] Escalated") for m in smtp_server.messages] == [False, True]
    assert list(alert.events.values_list("kind", flat=True)) == ["opened", "escalated"]


def test_slack_500_then_200_is_delivered_exactly_once(model, slack_server):
    make_channel(kind="slack", target=slack_server.url)
    slack_server.answer((500, "oops"), (503, "busy"))
    raise_signal(signal(model=model))
    assert deliver_due() == {"retry": 1}
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and "500" in delivery.last_error and delivery.next_attempt_at > timezone.now()
    assert deliver_due() == {}  # not due yet: backoff
    assert deliver_due(now=later(minutes=1)) == {"retry": 1}
    assert deliver_due(now=later(minutes=5)) == {"sent": 1}
    assert deliver_due(now=later(minutes=30)) == {}
    assert len(slack_server.requests) == 1
    assert Delivery.objects.get().attempts == 3
    assert NotificationChannel.objects.get().enabled


@pytest.mark.parametrize("status", [404, 410])
def test_a_dead_slack_webhook_disables_the_channel_with_the_reason(model, slack_server, status, client):
    channel = make_channel(kind="slack", target=slack_server.url)
    slack_server.answer((status, "no_team"))
    raise_signal(signal(model=model))
    raise_signal(signal(model=model, client_id="client-10"))
    assert deliver_due()["failed"] == 1
    channel.refresh_from_db()
    assert not channel.enabled and str(status) in channel.disabled_reason and "no longer exists" in channel.disabled_reason
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    client.force_login(make_user(role="admin"))
    page = client.get("/channels/").content.decode()
    assert "disabled" in page and "no longer exists" in page


def test_smtp_down_then_up_is_delivered_once(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    smtp_server.stop()
    raise_signal(signal(model=model))
    assert deliver_due() == {"retry": 1}
    assert "unreachable" in Delivery.objects.get().last_error
    assert NotificationChannel.objects.get().last_error
    smtp_server.start()
    assert deliver_due(now=later(minutes=2)) == {"sent": 1}
    assert deliver_due(now=later(minutes=10)) == {}
    assert len(smtp_server.messages) == 1


def test_a_refused_address_is_permanent(model, settings):
    from tests.servers import SmtpServer

    server = SmtpServer(refuse={"gone@example.com"}).start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        channel = make_channel(kind="email", target="gone@example.com")
        raise_signal(signal(model=model))
        assert deliver_due() == {"failed": 1}
        channel.refresh_from_db()
        assert not channel.enabled and "gone@example.com (550)" in channel.disabled_reason
    finally:
        server.stop()


def test_temporary_failures_give_up_after_the_retry_window(model, slack_server, settings):
    make_channel(kind="slack", target=slack_server.url)
    slack_server.answer(*[(502, "bad gateway")] * 3)
    raise_signal(signal(model=model))
    deliver_due()
    assert deliver_due(now=later(seconds=settings.DELIVERY_RETRY_SECONDS + 60)) == {"failed": 1}
    assert "gave up after 2 attempts" in Delivery.objects.get().last_error


def test_a_slow_slack_times_out_without_hanging(model, slack_server, settings):
    import time

    settings.NOTIFY_TIMEOUT = 1
    slack_server.delay = 3
    make_channel(kind="slack", target=slack_server.url)
    raise_signal(signal(model=model))
    started = time.monotonic()
    assert deliver_due() == {"retry": 1}
    assert time.monotonic() - started < 3


def test_mute_stops_notifications_until_it_expires(model, smtp_server, settings):
    settings.ALERT_REMINDER_SECONDS = 3600
    make_channel(kind="email", target="sec@example.com")
    alert, _ = raise_signal(signal(model=model, severity="warning"))
    deliver_due()
    mute(alert, user=make_user(role="security"), until=later(hours=1), reason="pen test in progress")
    raise_signal(signal(model=model, severity="critical"))  # would escalate, but muted
    assert housekeeping(now=later(minutes=59))["reminders"] == 0  # muted: no reminder either
    deliver_due(now=later(minutes=59))
    assert len(smtp_server.messages) == 1
    assert housekeeping(now=later(hours=2)) == {"unmuted": 1, "auto_resolved": 0, "reminders": 1}
    alert.refresh_from_db()
    assert alert.status == "open" and alert.muted_until is None and alert.severity == "critical"
    deliver_due(now=later(hours=2))
    assert len(smtp_server.messages) == 2 and "Still open" in smtp_server.messages[1]["Subject"]
    assert alert.events.filter(kind="muted").get().note == "pen test in progress"


def test_ack_and_resolve_record_who_and_when(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    alert, _ = raise_signal(signal(model=model))
    alice, bob = make_user(role="security", username="alice"), make_user(role="admin", username="bob")
    acknowledge(alert, user=alice, note="looking")
    alert = resolve(alert, user=bob, note="blocked the client")
    assert alert.acknowledged_by == alice and alert.ack_note == "looking" and alert.acknowledged_at
    assert alert.resolved_by == bob and alert.resolved_at >= alert.acknowledged_at
    events = list(alert.events.values_list("kind", "actor_name"))
    assert events == [("opened", "system"), ("acknowledged", "alice"), ("resolved", "bob")]
    deliver_due()
    assert [m["Subject"].split("]")[1].strip().split(":")[0] for m in smtp_server.messages][-1] == "Resolved"
    from monitor.trail.models import TrailEntry, verify_chain

    actions = list(TrailEntry.objects.values_list("action", "actor_name"))
    assert ("alert.acknowledged", "alice") in actions and ("alert.resolved", "bob") in actions
    assert verify_chain()[0]


def test_a_resolved_fingerprint_opens_a_new_alert_next_time(model):
    first, _ = raise_signal(signal(model=model))
    resolve(first, user=None)
    second, created = raise_signal(signal(model=model))
    assert created and second.pk != first.pk


def test_quiet_period_resolves_automatically(model):
    alert, _ = raise_signal(signal(model=model, quiet_period=timedelta(hours=6)))
    housekeeping(now=later(hours=1))
    assert Alert.objects.get().status == "open"
    housekeeping(now=later(hours=7))
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_by is None
    assert alert.events.last().note == "quiet period elapsed"


def test_open_critical_alerts_are_repeated_until_acknowledged(model, smtp_server, settings):
    settings.ALERT_REMINDER_SECONDS = 3600
    make_channel(kind="email", target="sec@example.com")
    alert, _ = raise_signal(signal(model=model, severity="critical"))
    deliver_due()
    housekeeping(now=later(minutes=30))
    assert housekeeping(now=later(minutes=61))["reminders"] == 1
    assert housekeeping(now=later(minutes=62))["reminders"] == 0
    deliver_due(now=later(minutes=62))
    assert [m["Subject"].split("]")[1].split(":")[0].strip() for m in smtp_server.messages] == ["near_duplicate_sweep by client-9 — credit / client-9", "Still open"]
    acknowledge(alert, user=make_user(role="security"))
    assert housekeeping(now=later(hours=5))["reminders"] == 0


def test_a_model_incident_silences_per_client_detail_alerts(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    raise_signal(signal(model=model, source="audit", kind="policy_breach", client_id="", incident=True, severity="critical"))
    detail, _ = raise_signal(signal(model=model, client_id="client-1"))
    deliver_due()
    assert len(smtp_server.messages) == 1 and "policy_breach" in smtp_server.messages[0]["Subject"]
    assert detail.events.filter(kind="suppressed").exists()
    assert Alert.objects.filter(client_id="client-1").exists()  # still visible
    raise_signal(signal(model=model, client_id="client-2", severity="critical"))  # an attack in progress
    deliver_due()
    assert len(smtp_server.messages) == 2 and "client-2" in smtp_server.messages[1]["Subject"]


def test_past_the_rate_limit_messages_fold_into_one_summary(model, smtp_server):
    make_channel(kind="email", target="sec@example.com", rate_limit_per_hour=3)
    for i in range(7):
        raise_signal(signal(model=model, client_id=f"client-{i}"))
    assert deliver_due() == {"sent": 3, "folded": 4}
    summary = Delivery.objects.get(event="summary")
    assert summary.status == "pending" and summary.next_attempt_at > timezone.now()
    assert deliver_due(now=later(hours=1, minutes=1)) == {"sent": 1}
    assert len(smtp_server.messages) == 4
    body = smtp_server.messages[-1].get_payload()[0].get_payload(decode=True).decode()
    assert "4 more alerts" in smtp_server.messages[-1]["Subject"]
    assert all(f"client-{i}" in body for i in range(3, 7))


def test_daily_digest_lists_new_and_open_alerts_once_per_day(model, smtp_server):
    make_channel(kind="email", target="sec@example.com")
    raise_signal(signal(model=model, client_id="client-a"))
    raise_signal(signal(model=model, client_id="client-b", severity="critical"))
    deliver_due()
    assert queue_digests() == 1 and queue_digests() == 0
    deliver_due()
    digest = smtp_server.messages[-1]
    assert "daily digest" in digest["Subject"] and "2 open alerts" in digest["Subject"]


def test_test_message_reports_success_and_failure(slack_server, smtp_server, db):
    ok = make_channel(kind="slack", target=slack_server.url)
    assert send_test(ok).status == "sent"
    assert "test message" in slack_server.requests[0]["json"]["text"].lower()
    smtp_server.stop()
    broken = make_channel(kind="email", target="sec@example.com")
    delivery = send_test(broken)
    assert delivery.status == "pending" and "unreachable" in delivery.last_error


def test_slack_messages_stay_within_block_kit_limits(model, slack_server):
    make_channel(kind="slack", target=slack_server.url)
    evidence = {f"key_{i}": "x" * 5000 for i in range(40)} | {"query_ids": list(range(5000))}
    raise_signal(signal(model=model, evidence=evidence, kind="k" * 300))
    assert deliver_due() == {"sent": 1}
    payload = slack_server.requests[0]["json"]
    assert len(payload["blocks"]) <= 50
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    for block in payload["blocks"]:
        assert len(block.get("text", {}).get("text", "")) <= 3000
        assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))


def test_a_message_resent_after_its_outcome_was_lost_keeps_its_idempotency_key(model, smtp_server, slack_server, settings):
    make_channel(kind="email", target="sec@example.com")
    make_channel(kind="slack", target=slack_server.url)
    raise_signal(signal(model=model))
    assert deliver_due() == {"sent": 2}
    # A worker killed after sending but before recording it leaves its rows "sending"; later they are sent again.
    Delivery.objects.update(status="sending")
    assert deliver_due(now=later(seconds=settings.DELIVERY_STUCK_SECONDS + 1)) == {"sent": 2}
    first, again = smtp_server.messages
    assert first["Message-ID"] == again["Message-ID"] and first["Message-ID"].startswith("<monitor.")
    keys = [request["headers"]["Idempotency-Key"] for request in slack_server.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {2}


def test_daily_digest_lists_critical_alerts_first_and_keeps_them_past_the_row_cap(model, db):
    # 200 warnings and infos seen more recently than one critical: a string sort on severity ("warning" >
    # "info" > "critical") put the critical alert last, and the 200-row cap then dropped it.
    make_channel(kind="email", target="sec@example.com")
    raise_signal(signal(model=model, client_id="client-critical", severity="critical"), now=later(minutes=-30))
    for i in range(200):
        raise_signal(signal(model=model, client_id=f"client-{i}", severity="info" if i % 2 else "warning"),
                     now=later(minutes=-20))
    assert queue_digests() == 1
    items = Delivery.objects.get(event="digest").payload["items"]
    assert len(items) == 200
    severities = [item["severity"] for item in items]
    assert severities[0] == "critical" and items[0]["client"] == "client-critical"
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


def test_email_and_slack_carry_the_sentence_and_readable_times_and_odds(model, smtp_server, slack_server):
    make_channel(kind="email", target="sec@example.com")
    make_channel(kind="slack", target=slack_server.url)
    evidence = {"score": 179.1, "n_queries": 400, "peak_window_count": 300, "peak_window_start": 1796110800.0,
                "window_seconds": 600.0, "population_threshold": 40, "baseline_mean_per_window": 11.1,
                "p_value": 8.26e-180, "false_alarm_rate": 0.001}
    raise_signal(signal(model=model, kind="volume", severity="critical", evidence=evidence))
    deliver_due()
    sentence = ("Sent 300 queries in 10 minutes from 2026-12-01 07:40 UTC, 27× its own usual 11.1 per window; "
                "benign clients stay under 40.")
    message = smtp_server.messages[0]
    plain = next(part.get_payload(decode=True).decode() for part in message.walk() if part.get_content_type() == "text/plain")
    assert sentence in plain and "about 1 in 10^179 for a benign client" in plain and "1796110800" not in plain
    slack_text = str(slack_server.requests[0]["json"]["blocks"])
    assert sentence in slack_text and "about 1 in 10^179 for a benign client" in slack_text
