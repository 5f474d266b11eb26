"""Slack down (5xx) or too slow to answer (past NOTIFY_TIMEOUT), with a real worker and beat: no delivery task
hangs, the channel stays enabled, and once Slack recovers each message is accepted exactly once."""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import FAST_RECOVERY, Processes
from tests.faults.services import Services, wait_until
from tests.servers import WebhookServer

pytestmark = pytest.mark.faults

NOTIFY_TIMEOUT = float(FAST_RECOVERY["NOTIFY_TIMEOUT"])


def deliveries(services: Services, alert_id: int, *, urls: dict[int, str]) -> dict[str, dict]:
    """The alert's outbox rows by channel target (`urls`: channel id -> target; the column holds it encrypted), with
    the channel's state."""
    rows = services.postgres.rows(
        "SELECT c.id, d.id, d.status, d.attempts, d.last_error, d.created_at, c.enabled FROM monitor_delivery d "
        "JOIN monitor_notificationchannel c ON c.id = d.channel_id WHERE d.alert_id = %s", (alert_id,))
    keys = ["id", "status", "attempts", "last_error", "created_at", "enabled"]
    return {urls[row[0]]: dict(zip(keys, row[1:], strict=True)) for row in rows}


def task_durations(log: str, task: str) -> list[float]:
    return [float(s) for s in re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded in ([0-9.]+)s", log)]


def test_slack_down_or_too_slow_hangs_no_worker_and_each_message_is_accepted_once_after_recovery(
        services: Services, processes: Processes, seeded: dict, webhooks: Callable[[], WebhookServer]):
    down, slow = webhooks(), webhooks()
    down.answer(*[(503, "service unavailable")] * 100)
    slow.answer(*[(504, "gateway timeout")] * 100)  # answered long after the worker has given up
    slow.delay = 5 * NOTIFY_TIMEOUT
    processes.beat()
    worker = processes.worker()
    [down_channel, slow_channel, alert] = services.seed(("slack_channel", {"url": down.url, "slug": "credit"}),
                                                        ("slack_channel", {"url": slow.url, "slug": "credit"}),
                                                        ("alert", {"slug": "credit", "client_id": "slack-outage"}))
    urls = {down_channel["id"]: down.url, slow_channel["id"]: slow.url}

    # Both keep failing and being retried with backoff; the worker moves on after each timeout.
    wait_until(lambda: len(down.received) >= 2 and len(slow.received) >= 2, timeout=60,
               what="two attempts at each endpoint")
    during = deliveries(services, alert["id"], urls=urls)
    assert during[down.url]["status"] in ("pending", "sending") and during[down.url]["enabled"]
    assert during[slow.url]["status"] in ("pending", "sending") and during[slow.url]["enabled"]
    assert "503" in during[down.url]["last_error"] or during[down.url]["status"] == "sending"
    assert "timed out" in during[slow.url]["last_error"] or during[slow.url]["status"] == "sending"

    down.script.clear()
    slow.script.clear()
    slow.delay = 0
    recovered = time.monotonic()
    wait_until(lambda: {d["status"] for d in deliveries(services, alert["id"], urls=urls).values()} == {"sent"},
               timeout=60, what="both deliveries to be sent after Slack recovered")
    caught_up = time.monotonic() - recovered
    time.sleep(3)  # more beat ticks: nothing else goes out
    assert len(down.requests) == 1 and len(slow.requests) == 1, "each endpoint accepted the message exactly once"
    after = deliveries(services, alert["id"], urls=urls)
    for server in (down, slow):
        row = after[server.url]
        assert row["status"] == "sent" and row["enabled"] and row["attempts"] == len(server.received)
        key = f"{row['id']}.{row['created_at']:%Y%m%d%H%M%S%f}"
        assert {r["headers"]["Idempotency-Key"] for r in server.received} == {key}
    assert "slack-outage" in down.requests[0]["json"]["text"]
    # No delivery task waited on Slack longer than its timeout (both endpoints in one pass: two timeouts at most).
    durations = task_durations(worker.log(), "monitor.tasks.deliver_notifications")
    assert durations and max(durations) < 2 * NOTIFY_TIMEOUT + 2, durations
    print(f"delivered {caught_up:.1f} s after Slack recovered; longest delivery task {max(durations):.1f} s")
