"""What a user-given URL may reach and how long and how much we listen to it: private networks only where an admin
named them, metadata never, one deadline for a whole request, and not a word of the receiver's reply kept."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from monitor.alerts.outbox import deliver_due
from monitor.models import Delivery, DeliveryEvent, NotificationChannel
from monitor.platform import outbound
from monitor.platform.outbound import parse_allowed_networks, refusal
from monitor.registry.artifacts import ArtifactError, EndpointPredictor
from tests.factories import make_channel, user_token
from tests.workers import ROOT

RECEIVER_SECRET = "internal-db-password-hunter2"


class RawReceiver:
    """A TCP server on loopback that reads one HTTP request per connection, then writes `head` at once and `reply`
    `per_write` bytes every `interval` seconds; `sent` counts the bytes that left before the sender hung up."""

    def __init__(self, reply: bytes, *, interval: float = 0.0, per_write: int = 1 << 16, head: bytes = b"") -> None:
        self.reply, self.interval, self.per_write, self.head = reply, interval, per_write, head
        self.sent = 0
        self.done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/services/T000/B000/XXXX"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            try:
                conn.sendall(self.head)
                for start in range(0, len(self.reply), self.per_write):
                    self.sent += conn.send(self.reply[start:start + self.per_write])
                    if self.interval:
                        time.sleep(self.interval)
            except OSError:
                pass  # the sender gave up: what we measure
            finally:
                self.done.set()

    def close(self) -> None:
        self._listener.close()


def http_reply(status_line: str, body: bytes, *, content_type: str = "text/plain") -> bytes:
    head = f"HTTP/1.1 {status_line}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --- where ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.1", "192.168.1.10", "fc00::1", "fd12:3456::1",
                                     "100.64.0.1", "::ffff:10.1.2.3"])
def test_private_networks_are_refused_unless_allowed(settings, address):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    assert refusal(ipaddress.ip_address(address)) is not None


def test_an_allowed_network_admits_its_addresses_and_no_others(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.20.0.0/16", "fd12:3456::/48"]
    assert refusal(ipaddress.ip_address("10.20.7.8")) is None
    assert refusal(ipaddress.ip_address("fd12:3456::9")) is None
    assert "private-network" in refusal(ipaddress.ip_address("10.21.0.1"))
    assert "private-network" in refusal(ipaddress.ip_address("192.168.0.1"))


@pytest.mark.parametrize(("address", "why"), [
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.10.5", "link-local"),
    ("fe80::1", "link-local"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
])
def test_metadata_and_link_local_are_refused_even_inside_an_allowed_network(settings, address, why):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["0.0.0.0/0", "::/0"]
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason


def test_loopback_stays_allowed_on_a_localhost_only_install(settings):
    # The test settings serve localhost only, like a fresh checkout: the local Slack stand-ins rely on it.
    assert settings.SERVES_ONLY_LOCALHOST and settings.OUTBOUND_ALLOW_LOOPBACK
    assert refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert refusal(ipaddress.ip_address("::1")) is None


@pytest.mark.parametrize(("raw", "complaint"), [
    ("10.0.0.0/8,,192.168.0.0/16", "empty entry"),
    ("10.0.0.1/8", "host bits"),
    ("intranet", "not a network"),
    ("169.254.0.0/16", "never allowed"),
    ("fd00:ec2::254/128", "never allowed"),
])
def test_the_allow_list_is_parsed_strictly(raw, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_allowed_networks(raw)


def test_the_allow_list_keeps_every_network_given():
    assert parse_allowed_networks(" 10.20.0.0/16, fd12:3456::/48 ") == ["10.20.0.0/16", "fd12:3456::/48"]
    assert parse_allowed_networks("") == []


@pytest.mark.parametrize(("variable", "value", "complaint"), [
    ("OUTBOUND_ALLOWED_NETWORKS", "10.0.0.1/8", "OUTBOUND_ALLOWED_NETWORKS"),
    ("OUTBOUND_ALLOW_PRIVATE", "true", "OUTBOUND_ALLOWED_NETWORKS"),
])
def test_a_bad_outbound_setting_stops_the_start(variable, value, complaint):
    environment = {**os.environ, variable: value}
    result = subprocess.run([sys.executable, "-c", "import monitor.settings"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and complaint in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(("target", "why"), [
    ("http://10.0.0.5/hooks/alerts", "private-network"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
])
def test_a_channel_at_a_refused_address_is_a_400_naming_the_target(api_as, settings, target, why):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    response = api_as(user_token(role="admin")).post("/api/v1/channels", {"name": "x", "kind": "webhook",
                                                                          "target": target})
    assert response.status_code == 400
    [problem] = response.json()["details"]
    assert problem["field"] == "target" and why in problem["message"] and "not allowed" in problem["message"]
    assert not NotificationChannel.objects.exists()


# --- how long ------------------------------------------------------------------------------------------------

def test_a_receiver_dripping_its_answer_is_cut_at_the_total_deadline():
    drip = RawReceiver(http_reply("200 OK", b"ok" * 50), interval=1.0, per_write=1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out"):
            outbound.post(drip.url, body=b"{}", headers={"Content-Type": "application/json"}, timeout=2.0)
        elapsed = time.monotonic() - started
    finally:
        drip.close()
    assert elapsed < 3.0  # one deadline of 2 s; a per-read timeout would wait for the whole drip (~140 s)


def test_a_model_endpoint_dripping_its_body_is_cut_at_the_total_deadline():
    body = b'{"probabilities": [[0.25, 0.75]]}' + b" " * 200
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    drip = RawReceiver(body, interval=0.5, per_write=1, head=head)  # the headers at once, then the body in drops
    try:
        predictor = EndpointPredictor(url=drip.url, classes=[], n_features=None, timeout=1.5)
        started = time.monotonic()
        with pytest.raises(ArtifactError, match="timed out"):
            predictor.predict_proba(np.zeros((1, 4)))
        elapsed = time.monotonic() - started
    finally:
        drip.close()
    assert elapsed < 2.5


@pytest.mark.django_db
def test_a_dripping_slack_leaves_the_outbox_within_notify_timeout(settings):
    settings.NOTIFY_TIMEOUT = 2
    drip = RawReceiver(http_reply("200 OK", b"ok" * 50), interval=1.0, per_write=1)
    try:
        Delivery.objects.create(channel=make_channel(kind="slack", target=drip.url), event=DeliveryEvent.TEST)
        started = time.monotonic()
        assert deliver_due() == {"retry": 1}
        elapsed = time.monotonic() - started
    finally:
        drip.close()
    assert elapsed < 3.5
    assert "timed out" in Delivery.objects.get().last_error


# --- how much ------------------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["slack", "webhook", "teams"])
@pytest.mark.parametrize("status_line", ["500 Internal Server Error", "400 Bad Request", "404 Not Found",
                                         f"503 {RECEIVER_SECRET}"])
def test_no_word_of_a_receivers_reply_is_stored_or_shown(api_as, kind, status_line):
    receiver = RawReceiver(http_reply(status_line, f"<html>{RECEIVER_SECRET}</html>".encode()))
    try:
        channel = make_channel(kind=kind, target=receiver.url)
        Delivery.objects.create(channel=channel, event=DeliveryEvent.TEST)
        deliver_due()
    finally:
        receiver.close()
    channel.refresh_from_db()
    stored = [Delivery.objects.get().last_error, channel.last_error, channel.disabled_reason]
    shown = api_as(user_token(role="admin")).get("/api/v1/channels").content.decode()
    status = status_line.split()[0]
    assert any(status in text for text in stored), stored
    assert not any(RECEIVER_SECRET in text for text in stored), stored
    assert RECEIVER_SECRET not in shown


@pytest.mark.django_db
def test_a_huge_error_reply_is_not_read():
    receiver = RawReceiver(http_reply("500 Internal Server Error", b"x" * (64 << 20)))
    try:
        Delivery.objects.create(channel=make_channel(kind="slack", target=receiver.url), event=DeliveryEvent.TEST)
        started = time.monotonic()
        assert deliver_due() == {"retry": 1}
        elapsed = time.monotonic() - started
        assert receiver.done.wait(10)
    finally:
        receiver.close()
    # What left the receiver before we hung up is what the two kernels buffer (a few MiB), not the 64 MiB it had.
    assert receiver.sent < 16 << 20, receiver.sent
    assert elapsed < 2.0


def test_a_model_endpoints_own_status_words_are_not_repeated():
    receiver = RawReceiver(http_reply(f"500 {RECEIVER_SECRET}", RECEIVER_SECRET.encode()))
    try:
        with pytest.raises(ArtifactError) as failed:
            EndpointPredictor(url=receiver.url, classes=[], n_features=None, timeout=2).predict_proba(np.zeros((1, 4)))
    finally:
        receiver.close()
    assert "500" in str(failed.value) and RECEIVER_SECRET not in str(failed.value)
