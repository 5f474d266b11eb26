"""Deployment checks, security headers, login lockout and CSRF."""
from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitor.trail.models import LoginFailureWindow, TrailEntry
from tests.factories import make_user
from tests.workers import ROOT

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-password-1"


def production_environment(**extra: str) -> dict[str, str]:
    """What a real deployment sets: a public host name and its own secrets (see README)."""
    # Without what the test session itself sets: DJANGO_ALLOW_ASYNC_UNSAFE comes from the browser tests' fixture
    # (Playwright's event loop beside the ORM) when they ran earlier in the same process.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DEBUG", "SECURE_COOKIES", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    environment.update(ALLOWED_HOSTS="monitor.example.com", SITE_URL="https://monitor.example.com",
                       SECRET_KEY=secrets.token_urlsafe(50), DATA_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                       EVIDENCE_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(), **extra)
    return environment


def manage(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_check_deploy_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", environment=production_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    environment = production_environment()
    del environment["DATA_ENCRYPTION_KEY"]
    result = manage("check", environment=environment)
    assert result.returncode != 0 and "DATA_ENCRYPTION_KEY must be set" in result.stderr


def test_production_settings_are_secure_by_default():
    script = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
              "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.OUTBOUND_ALLOW_LOOPBACK, s.DEBUG)")
    result = manage("shell", "--no-imports", "-c", script, environment=production_environment())
    assert result.stdout.split() == ["True", "True", "True", "31536000", "False", "False"], result.stderr


def test_hsts_is_behind_a_setting():
    result = manage("shell", "--no-imports", "-c", "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS)",
                    environment=production_environment(HSTS_SECONDS="0"))
    assert result.stdout.strip() == "0"


def test_pages_send_the_security_headers(client):
    client.force_login(make_user(role="viewer"))
    response = client.get(reverse("overview"))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_hsts_is_sent_over_https_when_configured(settings):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = Client().get(reverse("login"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"


def test_cookies_are_http_only_and_same_site(client):
    make_user(role="viewer", username="vera", password=PASSWORD)
    client.get(reverse("login"))
    response = client.post(reverse("login"), {"username": "vera", "password": PASSWORD})
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"


def fail_login(client: Client, username: str, *, ip: str = "10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": "wrong-password-123"}, REMOTE_ADDR=ip)


def test_repeated_failures_lock_the_account_and_are_logged(client, settings):
    make_user(role="viewer", username="vera", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert fail_login(client, "vera").status_code == 200  # the form again, with its error
    locked = fail_login(client, "vera")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # The right password no longer helps, from another address either, until the lockout ends.
    right = client.post(reverse("login"), {"username": "vera", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert right.status_code == 429
    assert client.get(reverse("overview")).status_code == 302
    entries = TrailEntry.objects.filter(action="auth.locked_out", object_id="vera")
    assert entries.exists() and entries.first().ip == "10.0.0.1"
    # A minute's failures from one address are one entry and, once folded, their count (monitor.trail.hooks).
    LoginFailureWindow.objects.fold(now=timezone.now() + timedelta(minutes=2))
    first = TrailEntry.objects.filter(action="auth.login_failed", ip="10.0.0.1")
    folded = {e.after["minute"]: e.after["failures"] for e in TrailEntry.objects.filter(action="auth.login_failures",
                                                                                       ip="10.0.0.1")}
    assert first.filter(object_id="vera").exists()
    assert sum(folded.values()) + sum(e.after["minute"] not in folded for e in first) == settings.AXES_FAILURE_LIMIT


def test_guessing_many_usernames_from_one_address_locks_the_address(client, settings):
    make_user(role="viewer", username="vera", password=PASSWORD)
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail_login(client, f"guess-{number}", ip="10.0.0.7")
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}, REMOTE_ADDR="10.0.0.7").status_code == 429
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}, REMOTE_ADDR="10.0.0.8").status_code == 302


def test_a_lockout_ends_after_the_cool_off_or_an_admin_reset(client, settings):
    from django.core.management import call_command

    make_user(role="viewer", username="vera", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        fail_login(client, "vera")
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}).status_code == 429
    call_command("axes_reset_username", "vera", stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command("axes_reset_ip", "10.0.0.1", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}).status_code == 302


def test_a_success_before_the_limit_clears_the_count(client, settings):
    make_user(role="viewer", username="vera", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        fail_login(client, "vera", ip="127.0.0.1")
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}).status_code == 302
    client.post(reverse("logout"))
    fail_login(client, "vera", ip="127.0.0.1")
    assert client.post(reverse("login"), {"username": "vera", "password": PASSWORD}).status_code == 302


def test_session_writes_to_the_api_need_the_csrf_token(model):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user(role="admin"))
    response = strict.post("/api/v1/models/credit/audits")
    assert response.status_code == 403
    assert "CSRF" in response.content.decode()
    token = strict.get(reverse("model-detail", kwargs={"slug": "credit"})).cookies["csrftoken"].value
    assert strict.post("/api/v1/models/credit/audits", HTTP_X_CSRFTOKEN=token).status_code == 202
