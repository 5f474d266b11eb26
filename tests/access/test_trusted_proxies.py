"""The client's address behind a reverse proxy (TRUSTED_PROXIES): X-Forwarded-For is read only when the direct peer
is a listed proxy, right to left, and the first entry that is not a listed proxy is the client. The login lockout,
the trail and failed-login folding all see that address."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import RequestFactory
from django.urls import reverse

from monitor.access.client_address import client_address, parse_trusted_proxies
from monitor.trail.actor import current_actor, serving
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry
from tests.factories import make_user
from tests.workers import ROOT

PASSWORD = "a-long-password-1"
PROXY = "10.0.0.5"


def request_from(peer: str, forwarded_for: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **extra)


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]


def test_without_trusted_proxies_the_peer_is_the_client_and_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert client_address(request_from("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_a_peer_outside_the_trusted_networks_cannot_name_another_client(behind_proxy):
    assert client_address(request_from("203.0.113.9", "198.51.100.1, 10.0.0.7")) == "203.0.113.9"


@pytest.mark.parametrize(("forwarded_for", "client"), [
    ("198.51.100.1", "198.51.100.1"),
    # A client may put anything left of what the proxy appended: only the right-most untrusted entry counts.
    ("1.2.3.4, 198.51.100.1", "198.51.100.1"),
    ("1.2.3.4, 198.51.100.1, 10.0.0.9", "198.51.100.1"),  # a second, inner proxy of ours
    ("2001:db8::1", "2001:db8::1"),
    ("10.1.2.3", "10.1.2.3"),  # every hop trusted: the left-most is as far as it goes
])
def test_behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client(behind_proxy, forwarded_for, client):
    assert client_address(request_from(PROXY, forwarded_for)) == client


@pytest.mark.parametrize("forwarded_for", [None, "", "not-an-address", "198.51.100.1, garbage"])
def test_a_missing_or_malformed_header_from_the_proxy_gives_the_proxy_itself(behind_proxy, forwarded_for):
    assert client_address(request_from(PROXY, forwarded_for)) == PROXY


@pytest.mark.parametrize(("raw", "networks"), [("", ()), ("10.0.0.0/8", ("10.0.0.0/8",)),
                                               (" 10.0.0.0/8 , fd00::/8 ", ("10.0.0.0/8", "fd00::/8")),
                                               ("192.0.2.7", ("192.0.2.7/32",))])
def test_trusted_proxies_parse_as_networks(raw, networks):
    assert tuple(str(n) for n in parse_trusted_proxies(raw)) == networks


@pytest.mark.parametrize(("raw", "message"), [("10.0.0.1/8", "host bits"), ("10.0.0.0/8,", "empty entry"),
                                              ("proxy.internal", "not a network")])
def test_a_bad_trusted_proxy_entry_stops_the_start_naming_it(tmp_path, raw, message):
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ALLOWED_HOSTS"}}
    environment.update(TRUSTED_PROXIES=raw, MONITOR_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="monitor.settings")
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "TRUSTED_PROXIES" in result.stderr and message in result.stderr


# --- the login lockout --------------------------------------------------------------------------------------

def login(client, username: str, password: str, *, forwarded_for: str, peer: str = PROXY):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=peer,
                       HTTP_X_FORWARDED_FOR=forwarded_for)


@pytest.mark.django_db
def test_behind_a_trusted_proxy_two_clients_are_locked_out_separately(client, settings, behind_proxy):
    make_user(role="viewer", username="vera", password=PASSWORD)
    for number in range(settings.AXES_FAILURE_LIMIT):  # many usernames: the address, not an account, is locked
        login(client, f"guess-{number}", "wrong-password-123", forwarded_for="198.51.100.1")
    assert login(client, "vera", PASSWORD, forwarded_for="198.51.100.1").status_code == 429
    assert login(client, "vera", PASSWORD, forwarded_for="198.51.100.2").status_code == 302
    failures = TrailEntry.objects.filter(action="auth.login_failed")
    assert set(failures.values_list("ip", flat=True)) == {"198.51.100.1"}
    assert TrailEntry.objects.get(action="auth.login").ip == "198.51.100.2"


@pytest.mark.django_db
def test_without_trusted_proxies_a_spoofed_header_does_not_dodge_the_lockout(client, settings):
    settings.TRUSTED_PROXIES = []
    make_user(role="viewer", username="vera", password=PASSWORD)
    for number in range(settings.AXES_FAILURE_LIMIT):
        login(client, f"guess-{number}", "wrong-password-123", peer="203.0.113.9", forwarded_for=f"198.51.100.{number}")
    assert login(client, "vera", PASSWORD, peer="203.0.113.9", forwarded_for="198.51.100.200").status_code == 429
    assert set(TrailEntry.objects.filter(action="auth.login_failed").values_list("ip", flat=True)) == {"203.0.113.9"}


def test_the_trail_records_the_clients_address_not_the_proxys(behind_proxy):
    with serving(request_from(PROXY, "198.51.100.4")):
        assert current_actor().ip == "198.51.100.4"
    assert client_ip(request_from(PROXY, "198.51.100.4")) == "198.51.100.4"
