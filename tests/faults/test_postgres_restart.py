"""PostgreSQL restarted under load: clients that retry with their request_id store every query exactly once,
the app answers 503 + Retry-After (never a hang or an HTML 500) while it is down, and persistent connections
recover by themselves once it is back."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from tests.faults.conftest import WEB_WORKERS, log_in, timed
from tests.faults.services import Services

pytestmark = pytest.mark.faults

CLIENTS = 4
BATCHES = 16
BATCH_SIZE = 20
OUTAGE_SECONDS = 2.0


@dataclass
class Client:
    """Posts its batches in order; retries each one with the same request_ids until it is answered 2xx."""

    name: str
    url: str
    token: str
    failures: list[tuple[float, int, dict, str]] = field(default_factory=list)  # (time, status, headers, body)
    broken: list[str] = field(default_factory=list)  # anything but a clean 503
    done: int = 0

    def batch(self, number: int) -> dict:
        return {"queries": [{"client_id": self.name, "features": [40.0 + i, 5000.0, 5.0, number / 10],
                             "output": [0.3, 0.7], "request_id": f"{self.name}-{number}-{i}"}
                            for i in range(BATCH_SIZE)]}

    def run(self) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.token}"}
        for number in range(BATCHES):
            body = self.batch(number)
            for _attempt in range(100):
                try:
                    answer = session.post(self.url, json=body, headers=headers, timeout=10)
                except requests.Timeout as exc:
                    self.broken.append(f"timeout: {exc}")
                    continue
                except requests.ConnectionError as exc:
                    self.broken.append(f"connection error: {exc}")
                    session = requests.Session()
                    time.sleep(0.1)
                    continue
                if answer.status_code == 201:
                    break
                self.failures.append((time.monotonic(), answer.status_code, dict(answer.headers), answer.text))
                if answer.status_code != 503:
                    self.broken.append(f"{answer.status_code}: {answer.text[:300]}")
                time.sleep(0.1)  # a real client honours Retry-After; this one is in a hurry
            else:
                self.broken.append(f"batch {number} never stored")
                return
            self.done += 1


def test_clients_retrying_with_request_ids_store_every_query_exactly_once_across_a_postgres_restart(
        services: Services, web: str, seeded: dict):
    url = f"{web}/api/v1/models/credit/queries"
    token = seeded["model"]["token"]
    clients = [Client(f"restart-{n}", url, token) for n in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    # Restart once every client is well into its batches.
    started = time.monotonic()
    while sum(c.done for c in clients) < CLIENTS * BATCHES // 4 and time.monotonic() - started < 60:
        time.sleep(0.05)
    services.postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    services.postgres.start()
    back_at = time.monotonic()
    for thread in threads:
        thread.join(120)

    assert [c.broken for c in clients] == [[]] * CLIENTS
    assert [c.done for c in clients] == [BATCHES] * CLIENTS
    failures = [f for c in clients for f in c.failures]
    assert failures, "the restart happened while no request was in flight; nothing was tested"
    for _, status, headers, body in failures:
        assert status == 503 and headers["Content-Type"] == "application/json" and headers["Retry-After"] == "5"
        assert '"error": "database unavailable' in body
    # Each gunicorn worker's persistent connection may fail once after the restart; then it is replaced.
    after_restart = len([f for f in failures if f[0] > back_at])
    assert after_restart <= WEB_WORKERS
    print(f"{len(failures)} answers were 503 ({after_restart} after PostgreSQL was back), all retried to 201")

    sent = CLIENTS * BATCHES * BATCH_SIZE
    stored = services.postgres.one("SELECT count(*) AS rows, count(DISTINCT request_id) AS request_ids "
                                   "FROM monitor_querylog WHERE client_id LIKE 'restart-%%'")
    assert stored == {"rows": sent, "request_ids": sent}
    # The rollups are folded from the stored rows: a retried batch, stored once, is counted once there too.
    assert "queries folded" in services.manage("fold_rollups")
    assert services.postgres.scalar("SELECT sum(count) FROM monitor_clientdayrollup WHERE client_id LIKE 'restart-%%'") == sent
    # Once it is back, every worker's connection works again: a round of requests all succeed first time.
    with requests.Session() as session:
        for number in range(3 * WEB_WORKERS):
            answer = session.post(url, json=clients[0].batch(1000 + number), headers={"Authorization": f"Bearer {token}"},
                                  timeout=10)
            assert answer.status_code == 201, answer.text[:300]


def test_with_postgres_down_the_api_and_the_pages_answer_503_promptly(services: Services, web: str, seeded: dict):
    person = seeded["admin"]
    browser = log_in(web, person["username"], person["password"])
    services.postgres.stop()
    try:
        with timed(5, "an ingestion request with the database down"):
            answer = requests.post(f"{web}/api/v1/models/credit/queries", timeout=10,
                                   headers={"Authorization": f"Bearer {seeded['model']['token']}"},
                                   json={"queries": [{"client_id": "c", "features": [1.0, 2.0, 3.0, 4.0],
                                                      "output": [0.5, 0.5], "request_id": "r-1"}]})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert answer.json() == {"error": "database unavailable; retry shortly", "details": []}
        with timed(5, "a read request with the database down"):
            answer = requests.get(f"{web}/api/v1/models", timeout=10,
                                  headers={"Authorization": f"Bearer {person['token']}"})
        assert answer.status_code == 503 and answer.json()["error"].startswith("database unavailable")
        with timed(5, "the overview page with the database down"):
            page = browser.get(f"{web}/", timeout=10)
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        assert "Temporarily unavailable" in page.text and "Server Error" not in page.text
    finally:
        services.postgres.start()
    # Back up: the same session and token work again without anything restarted.
    for _ in range(WEB_WORKERS + 1):
        page = browser.get(f"{web}/", timeout=10)
        if page.status_code == 200:
            break
    assert page.status_code == 200
