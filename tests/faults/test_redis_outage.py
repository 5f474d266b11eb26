"""Redis (the Celery broker) stopped for a while: ingestion, pages and the buttons that queue work keep answering
promptly; what they queued waits in the database; once Redis is back the worker reconnects, the beat's scan
covers the queries logged during the outage, the audits asked for run, and the notification goes out once.

The outage lasts a minute (FAULTS_REDIS_OUTAGE_SECONDS=60; shorten it locally with the variable). Redis runs
without persistence, so it comes back empty, as after a crash: nothing queued survives in the broker.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import requests

from audits.scheduling import WAITING_FOR_BROKER
from tests.faults.conftest import Processes, csrf_token, log_in, timed
from tests.faults.services import Services, wait_until
from tests.servers import WebhookServer

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = float(os.environ.get("FAULTS_REDIS_OUTAGE_SECONDS", "60"))


def benign(prefix: str, n: int, offset: int = 0) -> dict:
    return {"queries": [{"client_id": f"{prefix}-{i % 7}", "features": [30.0 + (i % 23), 4000.0 + 37 * (i % 41),
                                                                         2.0 + i % 9, (i % 13) / 13],
                         "output": [0.4, 0.6], "request_id": f"{prefix}-{offset + i}"} for i in range(n)]}


def scanned_up_to(services: Services) -> int:
    return services.postgres.scalar(
        "SELECT s.watermark_id FROM monitor_detectorstate s JOIN monitor_registeredmodel m ON m.id = s.model_id "
        "WHERE m.slug = 'credit'") or 0


def newest_query(services: Services) -> int:
    return services.postgres.scalar("SELECT max(q.id) FROM monitor_querylog q JOIN monitor_registeredmodel m "
                                    "ON m.id = q.model_id WHERE m.slug = 'credit'")


def run_of(services: Services, run_id: int) -> dict:
    return services.postgres.one("SELECT status, step, error FROM audits_auditrun WHERE id = %s", (run_id,))


@pytest.mark.long
def test_with_redis_down_requests_keep_answering_and_scans_audits_and_alerts_catch_up_afterwards(
        services: Services, web: str, processes: Processes, seeded: dict, webhooks: Callable[[], WebhookServer]):
    ingest = {"Authorization": f"Bearer {seeded['model']['token']}"}
    admin = {"Authorization": f"Bearer {seeded['admin']['token']}"}
    queries_url = f"{web}/api/v1/models/credit/queries"
    slack = webhooks()
    processes.beat()
    processes.worker()
    [_, alert] = services.seed(("slack_channel", {"url": slack.url, "slug": "credit"}),
                               ("alert", {"slug": "credit", "client_id": "redis-outage"}))
    browser = log_in(web, seeded["admin"]["username"], seeded["admin"]["password"])
    # Before: traffic is logged and scanned (the first scan calibrates the detectors on it), the alert goes out.
    assert requests.post(queries_url, json=benign("before", 300), headers=ingest, timeout=10).status_code == 201
    wait_until(lambda: scanned_up_to(services) >= newest_query(services), timeout=60, what="the first scan")
    wait_until(lambda: slack.requests, timeout=30, what="the alert's first message")

    services.redis.stop()
    outage_started = time.monotonic()
    with timed(5, "starting an audit through the API with Redis down"):
        answer = requests.post(f"{web}/api/v1/models/credit/audits", headers=admin, timeout=10)
    assert answer.status_code == 202, answer.text[:300]
    runs = [answer.json()["id"]]
    token = csrf_token(browser, web, "/models/credit/")
    with timed(5, "the page's 'Run an audit now' button with Redis down"):
        answer = browser.post(f"{web}/models/credit/audit/", data={"csrfmiddlewaretoken": token}, timeout=10,
                              headers={"Referer": f"{web}/models/credit/"}, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/audits/")
    runs.append(int(answer.headers["Location"].strip("/").split("/")[-1]))
    for run_id in runs:
        assert run_of(services, run_id) == {"status": "queued", "step": WAITING_FOR_BROKER, "error": ""}
    with timed(5, "resolving an alert (which queues its notification) with Redis down"):
        answer = requests.post(f"{web}/api/v1/alerts/{alert['id']}/resolve", headers=admin, json={"note": "outage"},
                               timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "resolved", answer.text[:300]
    batches = 0
    while time.monotonic() - outage_started < OUTAGE_SECONDS:
        with timed(3, "an ingestion batch with Redis down"):
            answer = requests.post(queries_url, json=benign("during", 50, offset=50 * batches), headers=ingest,
                                   timeout=10)
        assert answer.status_code == 201 and answer.json() == {"accepted": 50, "duplicates": 0}
        batches += 1
        for page in ("/", "/models/credit/", "/alerts/"):
            with timed(5, f"the page {page} with Redis down"):
                answer = browser.get(f"{web}{page}", timeout=10)
            assert answer.status_code == 200, (page, answer.status_code)
        time.sleep(1)
    logged_during_outage = newest_query(services)
    assert scanned_up_to(services) < logged_during_outage  # nothing could scan them yet

    services.redis.start()
    back = time.monotonic()
    wait_until(lambda: scanned_up_to(services) >= logged_during_outage, timeout=120,
               what="a scan covering the queries logged during the outage")
    scanned_after = time.monotonic() - back
    wait_until(lambda: all(run_of(services, r)["status"] in ("done", "failed") for r in runs), timeout=120,
               what="the audits asked for during the outage to finish")
    for run_id in runs:
        assert run_of(services, run_id)["status"] == "done", run_of(services, run_id)
    def about_the_alert() -> list[str]:
        link = f"/alerts/{alert['id']}/"
        return [r["json"]["text"] for r in slack.requests if link in str(r["json"]["blocks"])]

    wait_until(lambda: len(about_the_alert()) >= 2, timeout=60, what="the 'resolved' message")
    caught_up = time.monotonic() - back
    time.sleep(3)
    opened, resolved = about_the_alert()  # each once (the audits and scans may have raised alerts of their own)
    assert "redis-outage" in opened and "resolved" in resolved.lower()
    keys = [r["headers"]["Idempotency-Key"] for r in slack.requests]
    assert len(keys) == len(set(keys)), "no message was sent twice"
    print(f"outage {OUTAGE_SECONDS:.0f} s, {batches} batches logged during it; after Redis came back: scanned in "
          f"{scanned_after:.1f} s, everything caught up in {caught_up:.1f} s")
