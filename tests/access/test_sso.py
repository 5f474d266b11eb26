"""Single sign-on against a real OpenID Connect provider (django-oidc-provider, tests/oidc_op, in its own process
on loopback): the whole authorization-code round trip, roles from the groups claim through OIDC_ROLE_MAP, a person
without a mapped group refused with a page that says so, local logins that an admin can turn off."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from monitor.trail.models import TrailEntry
from tests.factories import make_user
from tests.servers import free_port

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_op.settings", "OP_URL": url, "PYTHONPATH": str(ROOT),
           "OP_DATABASE": str(tmp_path_factory.mktemp("op") / "op.sqlite3")}
    for name in ("DATABASE_URL",):
        env.pop(name, None)

    def run(*args: str) -> None:
        subprocess.run([sys.executable, *args], env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)

    run("-m", "django", "migrate", "--noinput")
    run("-m", "django", "creatersakey")
    run("-m", "tests.oidc_op.setup_op", "http://testserver/oidc/callback/")
    server = subprocess.Popen([sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if requests.get(f"{url}/openid/.well-known/openid-configuration", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the test identity provider did not start")
        yield requests.get(f"{url}/openid/.well-known/openid-configuration", timeout=5).json()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def sso(settings, provider):
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "mi-monitor", "op-test-secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = provider["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = provider["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = provider["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = provider["jwks_uri"]
    settings.OIDC_ROLE_MAP = "sec-team=security, grc=compliance"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "monitor.access.sso.RoleMappingOIDCBackend"]
    return provider


def sign_in(client, username: str) -> requests.Response | None:
    """The browser's part: our /oidc/authenticate/ → the provider's login form → its redirect back to us."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302, start.content
    browser = requests.Session()
    authorize = start["Location"]
    assert urlparse(authorize).path.endswith("/openid/authorize")
    to_login = browser.get(authorize, allow_redirects=False)
    login_url = urljoin(authorize, to_login.headers["Location"])
    form = browser.get(login_url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    nxt = parse_qs(urlparse(login_url).query)["next"][0]
    signed = browser.post(login_url, data={"username": username, "password": "op-password-1", "next": nxt,
                                           "csrfmiddlewaretoken": token}, headers={"Referer": login_url},
                          allow_redirects=False)
    assert signed.status_code == 302, signed.text[:300]
    back = browser.get(urljoin(login_url, signed.headers["Location"]), allow_redirects=False)
    redirect = back.headers["Location"]
    assert redirect.startswith("http://testserver/oidc/callback/?"), redirect
    return client.get(redirect.removeprefix("http://testserver"))


def test_sign_in_through_a_real_provider_maps_groups_to_roles(client, sso):
    landed = sign_in(client, "ana")
    assert landed.status_code == 302 and landed["Location"] == "/"
    overview = client.get("/")
    assert overview.status_code == 200
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username__startswith="sso:")
    assert set(user.groups.values_list("name", flat=True)) == {"security"}  # sec-team → security; "everyone" unmapped
    assert not user.has_usable_password() and user.email == "ana@example.com"
    assert client.post("/channels/", {}).status_code == 403  # security, not admin
    assert TrailEntry.objects.filter(action="sso.signed_in", actor=user).exists()
    client.logout()
    assert sign_in(client, "greta").status_code == 302
    greta = get_user_model().objects.get(email="greta@example.com")
    assert set(greta.groups.values_list("name", flat=True)) == {"compliance"}


def test_a_person_without_a_mapped_group_gets_no_access_and_is_told_why(client, sso):
    landed = sign_in(client, "nobody")
    assert landed.status_code == 302 and landed["Location"] == "/sso/denied/"
    page = client.get("/sso/denied/")
    assert page.status_code == 200 and "OIDC_ROLE_MAP" in page.content.decode()
    assert client.get("/").status_code == 302  # not signed in: back to the login page
    assert TrailEntry.objects.filter(action="sso.denied").count() == 1


def test_the_login_page_offers_sso_and_local_logins_can_be_turned_off(client, sso, settings):
    make_user(role="viewer", username="vera", password="a-long-password-1")
    page = client.get("/login/").content.decode()
    assert 'id="sso-login"' in page and 'name="password"' in page
    settings.LOCAL_LOGIN = False
    refused = client.post("/login/", {"username": "vera", "password": "a-long-password-1"})
    assert refused.status_code == 200 and "turned off" in refused.content.decode()
    assert client.get("/").status_code == 302
    assert 'name="password"' not in client.get("/login/").content.decode()


def test_without_oidc_settings_the_sso_urls_do_not_exist(client):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    assert 'id="sso-login"' not in client.get("/login/").content.decode()
