"""Fixtures of the fault tests: private PostgreSQL and Redis, the app on them as real processes, a login.

Every fixture that stops something restores it. Test modules mark themselves `faults`.
"""
from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.faults.services import AppProcess, Services, start_beat, start_web, start_worker
from tests.servers import WebhookServer

WEB_WORKERS = 2
# The app's own settings, shortened through the environment so that recovery shows within seconds. Each one is
# a documented setting of monitor/settings.py; the code paths are the production ones.
FAST_RECOVERY = {
    "NOTIFY_TIMEOUT": "2",  # a Slack request gives up after 2 s
    "DELIVERY_STUCK_SECONDS": "6",  # a row left "sending" by a dead worker is sent again after 6 s
    "AUDIT_STALE_SECONDS": "8",  # an audit without a heartbeat for 8 s belongs to a dead worker
    "DELIVERY_BACKOFF_SECONDS": "3",  # a failed delivery is retried after 3 s, 6 s, 12 s, …
    "DETECTOR_MIN_CALIBRATION_ROWS": "100",
}


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """A PostgreSQL cluster and a Redis of this session's own, migrated; removed at the end."""
    started = Services()
    try:
        started.env.update(FAST_RECOVERY)
        started.manage("migrate", "--noinput")
        yield started
    finally:
        started.destroy()


@pytest.fixture(autouse=True)
def services_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test stopped runs again afterwards, even when the test failed half-way."""
    yield
    if "services" in request.fixturenames:
        running = request.getfixturevalue("services")
        running.postgres.ensure_running()
        running.redis.ensure_running()


@pytest.fixture(scope="session")
def web(services: Services) -> Iterator[str]:
    """gunicorn serving the app on the private services; yields its base URL."""
    process, url = start_web(services, workers=WEB_WORKERS)
    yield url
    output = process.stop(signal.SIGQUIT)  # gunicorn's quick shutdown: nothing is in flight any more
    if "Traceback" in output:
        print(output[-5000:])


@pytest.fixture(scope="session")
def seeded(services: Services) -> dict:
    """What most fault tests share: a model with an ingestion token, and an admin with a password and a token."""
    model, admin, _ = services.seed(("ingest_model", {"slug": "credit"}), ("user", {"role": "admin"}),
                                    ("set_policy", {"slug": "credit", "attacks": ["threshold"]}))
    return {"model": model, "admin": admin}


@pytest.fixture
def webhooks(services: Services) -> Iterator[Callable[[], WebhookServer]]:
    """Real HTTP servers standing in for Slack; channels pointing at them are disabled when the test ends."""
    servers: list[WebhookServer] = []

    def make() -> WebhookServer:
        servers.append(WebhookServer())
        return servers[-1]

    yield make
    for server in servers:
        server.close()
    if servers:
        # Through the app: a Slack target is stored encrypted, so SQL cannot find the channels by their URL.
        with contextlib.suppress(Exception):
            services.postgres.ensure_running()
            services.seed(*(("disable_channels_to", {"url": server.url}) for server in servers))


class Processes:
    """Workers and beats a test starts; all stopped when it ends (their output printed if a test failed)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.started: list[AppProcess] = []

    def worker(self, name: str = "worker", *, ready: bool = True, **env: str) -> AppProcess:
        process = start_worker(self.services, name, **env)
        self.started.append(process)
        if ready:
            process.wait_for_output(" ready.")
        return process

    def beat(self) -> AppProcess:
        process = start_beat(self.services)
        self.started.append(process)
        return process

    def stop_all(self) -> dict[str, str]:
        for process in self.started:  # all asked at once, then waited for
            if process.alive():
                process.process.terminate()
        return {f"{p.name} {p.pid}": p.stop() for p in self.started}


@pytest.fixture
def processes(services: Services, request: pytest.FixtureRequest) -> Iterator[Processes]:
    started = Processes(services)
    yield started
    logs = started.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        for name, text in logs.items():
            print(f"===== {name}\n{text[-6000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def log_in(base_url: str, username: str, password: str) -> requests.Session:
    """A browser-like session through the real login form (CSRF cookie and token included)."""
    session = requests.Session()
    form = session.get(f"{base_url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    answer = session.post(f"{base_url}/login/", data={"username": username, "password": password,
                                                       "csrfmiddlewaretoken": token},
                          headers={"Referer": f"{base_url}/login/"}, timeout=10, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    return session


def csrf_token(session: requests.Session, base_url: str, page: str) -> str:
    text = session.get(f"{base_url}{page}", timeout=10).text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)


@contextlib.contextmanager
def timed(limit: float, what: str) -> Iterator[None]:
    """Fail when the block takes longer than `limit` seconds: a hang shows as a failure, not a stuck suite."""
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    assert took < limit, f"{what} took {took:.1f} s (limit {limit} s)"
