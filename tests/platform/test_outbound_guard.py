"""User-given URLs (model endpoints, Slack webhooks) cannot be turned against metadata services or this host."""
from __future__ import annotations

import ipaddress
import time

import pytest

from monitor.models import NotificationChannel, QueryLog, RegisteredModel
from monitor.platform.outbound import OutboundBlocked, check_url, refusal
from monitor.registry.registration import RegistrationError, Upload, register_model
from tests.factories import csv_bytes, make_data, user_token
from tests.servers import ModelServer, WebhookServer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("address", "why"), [
    ("169.254.169.254", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (an address we refuse, not one we bind)
    ("224.0.0.1", "multicast"),
    ("100.100.100.200", "metadata"),
    ("fd00:ec2::254", "metadata"),
])
def test_metadata_and_special_addresses_are_always_refused(address, why):
    assert why in refusal(ipaddress.ip_address(address))


def test_loopback_and_private_ranges_follow_the_settings(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = False
    assert "loopback" in refusal(ipaddress.ip_address("127.0.0.1"))
    assert "loopback" in refusal(ipaddress.ip_address("::1"))
    assert "private" in refusal(ipaddress.ip_address("10.1.2.3"))
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert refusal(ipaddress.ip_address("10.1.2.3")) is None
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    assert refusal(ipaddress.ip_address("127.0.0.1")) is None


def test_an_explicitly_allowed_network_overrides_the_refusal_but_not_for_link_local(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["100.64.0.0/10", "169.254.10.0/24"]
    assert refusal(ipaddress.ip_address("100.64.3.4")) is None
    assert "link-local" in refusal(ipaddress.ip_address("169.254.10.5"))
    assert "metadata" in refusal(ipaddress.ip_address("100.100.100.200"))


def test_a_hostname_is_checked_by_what_it_resolves_to(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = False
    with pytest.raises(OutboundBlocked, match="localhost resolves to .*loopback"):
        check_url("http://localhost:8080/predict")


def register_endpoint(url: str) -> RegisteredModel:
    return register_model(slug="remote", name="Remote", label_column="label", endpoint_url=url,
                          members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))))


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/predict",
                                 "http://0.0.0.0:8000/predict"])
def test_registering_an_endpoint_at_a_refused_address_stores_nothing(url):
    with pytest.raises(RegistrationError) as refused:
        register_endpoint(url)
    assert refused.value.field == "endpoint" and "not allowed" in refused.value.message
    assert not RegisteredModel.objects.exists()


def test_a_slack_channel_at_the_metadata_address_is_refused_by_the_api(api_as):
    api = api_as(user_token(role="admin"))
    response = api.post("/api/v1/channels", {"name": "exfil", "kind": "slack", "target": "http://169.254.169.254/latest/"})
    assert response.status_code == 400
    assert "link-local" in response.json()["error"]
    assert not NotificationChannel.objects.exists()


def test_the_address_is_checked_again_at_every_connection(api_as, settings):
    """As after a DNS rebinding: registration saw an allowed address, the connection would reach a refused one."""
    server = ModelServer()
    try:
        model = register_endpoint(server.url)
        api = api_as(user_token(role="security"))
        body = {"client_id": "app", "features": [[1.0, 2.0, 3.0, 4.0]]}
        assert api.post(f"/api/v1/models/{model.slug}/predict", body).status_code == 200
        settings.OUTBOUND_ALLOW_LOOPBACK = False
        response = api.post(f"/api/v1/models/{model.slug}/predict", body)
    finally:
        server.close()
    assert response.status_code == 502
    assert "not allowed" in response.json()["error"]
    assert len(server.requests) == 1
    assert QueryLog.objects.count() == 1


def test_an_endpoint_redirect_is_not_followed(api_as):
    target = ModelServer()
    redirecting = ModelServer(redirect_to=target.url)
    try:
        model = register_endpoint(redirecting.url)
        response = api_as(user_token(role="security")).post(
            f"/api/v1/models/{model.slug}/predict", {"client_id": "app", "features": [[1.0, 2.0, 3.0, 4.0]]})
    finally:
        target.close()
        redirecting.close()
    assert response.status_code == 502
    assert "307" in response.json()["error"]
    assert target.requests == []


def test_a_slow_endpoint_times_out_with_502(api_as, settings):
    settings.REMOTE_MODEL_TIMEOUT = 1.0
    server = ModelServer(delay=4.0)
    try:
        model = register_endpoint(server.url)
        started = time.monotonic()
        response = api_as(user_token(role="security")).post(
            f"/api/v1/models/{model.slug}/predict", {"client_id": "app", "features": [[1.0, 2.0, 3.0, 4.0]]})
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert response.status_code == 502 and "timed out" in response.json()["error"]
    assert elapsed < 3.0


def test_a_webhook_that_redirects_disables_the_channel_without_following(model):
    from monitor.alerts.lifecycle import raise_signal
    from monitor.alerts.outbox import deliver_due
    from tests.factories import make_channel, signal

    target = WebhookServer()
    redirecting = ModelServer(redirect_to=target.url)
    try:
        channel = make_channel(kind="slack", target=redirecting.url.replace("/predict", "/services/T/B/X"))
        raise_signal(signal(model=model, client_id="c-1", severity="critical"))
        deliver_due()
    finally:
        target.close()
        redirecting.close()
    channel.refresh_from_db()
    assert len(redirecting.requests) == 1 and target.requests == []
    assert not channel.enabled and "redirect" in channel.disabled_reason
