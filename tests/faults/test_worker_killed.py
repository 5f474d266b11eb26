"""Workers SIGKILLed mid-audit and mid-delivery (no cleanup, no acknowledgement): the beat's reaper and the
outbox hand the work to a new worker; the audit completes, the message goes out again under the same
idempotency key, and nothing is left half-done.

The other outcome of a killed audit, failing with the reason once MAX_ATTEMPTS workers died on it, is
tests/audits/test_audit_runs.py (the same reaper, driven with a clock instead of real minutes)."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import Processes
from tests.faults.services import Services, wait_until
from tests.servers import WebhookServer

pytestmark = pytest.mark.faults

ATTACKS = ["threshold", "rmia", "lira_offline", "lira_online"]


@pytest.fixture(scope="module")
def audited(services: Services) -> dict:
    """A leaky model whose audit takes some seconds, long enough to be killed in the middle of."""
    [model] = services.seed(("audited_model", {"slug": "leaky", "n": 600, "attacks": ATTACKS, "n_reference": 8}))
    return model


def audit_run(services: Services, run_id: int) -> dict:
    return services.postgres.one("SELECT status, progress, step, error, attempts, result FROM audits_auditrun "
                                 "WHERE id = %s", (run_id,))


def kill_mid_run(services: Services, processes: Processes, run_id: int, *, attempt: int) -> None:
    worker = processes.worker(f"audit-{attempt}")

    def under_way() -> bool:
        run = audit_run(services, run_id)
        return run["status"] == "running" and run["attempts"] == attempt and 5 <= run["progress"] < 90

    wait_until(under_way, timeout=120, interval=0.05, what=f"attempt {attempt} to be under way")
    worker.kill()
    killed = audit_run(services, run_id)
    assert killed["status"] == "running" and killed["progress"] < 100, killed


def test_a_worker_killed_mid_audit_is_replaced_and_the_run_completes(services: Services, processes: Processes,
                                                                      audited: dict):
    processes.beat()  # its reaper notices the silence (AUDIT_STALE_SECONDS) and sends the run again
    [run] = services.seed(("request_audit", {"slug": "leaky"}))
    kill_mid_run(services, processes, run["id"], attempt=1)
    processes.worker("audit-2")
    wait_until(lambda: audit_run(services, run["id"])["status"] in ("done", "failed"), timeout=180,
               what="the audit to finish on the second worker")
    finished = audit_run(services, run["id"])
    assert finished["status"] == "done", finished["error"]
    assert finished["attempts"] == 2 and finished["progress"] == 100 and finished["error"] == ""
    assert {"rmia", "lira_offline", "lira_online"} <= {a["name"] for a in finished["result"]["attacks"]}
    assert finished["result"]["headline"]["tpr_at_fpr"]["0.01"]["value"] > 0.05  # the leak is still measured


def delivery(services: Services, alert_id: int) -> dict:
    return services.postgres.one("SELECT id, status, attempts, created_at, last_error FROM monitor_delivery "
                                 "WHERE alert_id = %s", (alert_id,)) or {}


def test_a_worker_killed_with_a_slack_request_in_flight_is_resent_once_under_the_same_idempotency_key(
        services: Services, processes: Processes, seeded: dict, webhooks: Callable[[], WebhookServer]):
    processes.beat()  # its delivery task hands the orphaned row back after DELIVERY_STUCK_SECONDS
    first = processes.worker("sender-1", NOTIFY_TIMEOUT="30")  # it would wait for Slack's answer: no timeout first
    webhook = webhooks()
    webhook.delay = 8  # holds the request: the worker is killed while it waits for the answer
    [_, alert] = services.seed(("slack_channel", {"url": webhook.url, "slug": "credit"}),
                               ("alert", {"slug": "credit", "client_id": "killed-mid-send"}))
    wait_until(lambda: webhook.received, timeout=30, interval=0.02, what="the message to reach the webhook")
    first.kill()
    webhook.delay = 0
    orphaned = delivery(services, alert["id"])
    assert orphaned["status"] == "sending" and orphaned["attempts"] == 1

    processes.worker("sender-2")
    wait_until(lambda: delivery(services, alert["id"])["status"] == "sent", timeout=60,
               what="the delivery to be sent again")
    time.sleep(4)  # two more beat ticks: nothing else goes out
    sent = delivery(services, alert["id"])
    assert sent["status"] == "sent" and sent["attempts"] == 2 and len(webhook.received) == 2
    key = f"{sent['id']}.{sent['created_at']:%Y%m%d%H%M%S%f}"
    # The receiver got the request twice (its first answer died with the worker), both under one key: a receiver
    # that deduplicates on Idempotency-Key shows the message exactly once. Slack's incoming webhooks do not.
    assert [r["headers"]["Idempotency-Key"] for r in webhook.received] == [key, key]
    assert webhook.received[0]["json"] == webhook.received[1]["json"]
