from __future__ import annotations

import json
import os

import pytest
from django.conf import settings
from django.db import connection


def pytest_configure(config: pytest.Config) -> None:
    # Django's own advice for a faster suite: the users tests make get a cheap hash. PBKDF2 costs 0.3 s a password
    # on a CI machine and the suite makes well over a thousand users; production's hashers stay in the list, so a
    # stored PBKDF2 hash still verifies, and subprocesses (workers, `make run`) keep settings.py's.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI sets REQUIRE_SERVICES=1: the suite must run against PostgreSQL and Redis, never fall back.
    if os.environ.get("REQUIRE_SERVICES") == "1":
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            raise pytest.UsageError(f"REQUIRE_SERVICES=1 but the database engine is {engine}")
        if not settings.CELERY_BROKER_URL.startswith("redis://"):
            raise pytest.UsageError(f"REQUIRE_SERVICES=1 but the broker is {settings.CELERY_BROKER_URL}")


def _transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", [])
    return bool(marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) \
        or "transactional_db" in fixtures or "live_server" in fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `long` first (a stable sort: the rest keep their order). Under pytest-xdist a long test met
    last keeps one worker busy for minutes after the other has finished.

    This runs after pytest-django's own ordering (its hook is tryfirst): tests on the database in a transaction
    first, transactional ones (which flush the database, the roles' groups of migration 0002 included) after them.
    A long transactional test would break that order, so none may be marked long. `make test` distributes with
    xdist's `load`, which hands each worker its tests in this order; `worksteal` does not (a worker that steals
    runs earlier tests after later ones), and failed test_groups_exist_after_migrations that way."""
    wrong = [item.nodeid for item in items if item.get_closest_marker("long") and _transactional(item)]
    if wrong:
        raise pytest.UsageError(f"a transactional test may not be marked long (it would run before the others): {wrong}")
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture
def model(db):
    from tests import factories  # imported here: the pure-core suites run without Django

    return factories.make_model()


class Api:
    """The Django test client speaking JSON with a bearer token."""

    def __init__(self, client, token: str | None) -> None:
        self.client, self.token = client, token

    def _headers(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str):
        return self.client.get(path, **self._headers())

    def post(self, path: str, body=None, *, content_type: str = "application/json", raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data=data, content_type=content_type, **self._headers())

    def patch(self, path: str, body=None):
        return self.client.patch(path, data=json.dumps(body), content_type="application/json", **self._headers())


@pytest.fixture
def api_as(client):
    def make(token: str | None) -> Api:
        return Api(client, token)

    return make


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor


@pytest.fixture
def smtp_server(settings):
    from tests.servers import SmtpServer

    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.NOTIFY_TIMEOUT = 3
    yield server
    server.stop()


@pytest.fixture
def slack_server(settings):
    from tests.servers import WebhookServer

    settings.NOTIFY_TIMEOUT = 2
    server = WebhookServer()
    yield server
    server.close()
