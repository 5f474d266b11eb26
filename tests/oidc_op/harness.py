"""The provider as the SSO tests use it: started in its own process on loopback (`running_provider`), and the
browser's part of a sign-in (`through_provider`: our /oidc/authenticate/, its login form, its redirect back)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import requests

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CALLBACK = "http://testserver/oidc/callback/"


@contextmanager
def running_provider(folder: Path) -> Iterator[dict]:
    """Yields the provider's discovery document."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_op.settings", "OP_URL": url, "PYTHONPATH": str(ROOT),
           "OP_DATABASE": str(folder / "op.sqlite3")}
    env.pop("DATABASE_URL", None)

    def run(*args: str) -> None:
        subprocess.run([sys.executable, *args], env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)

    run("-m", "django", "migrate", "--noinput")
    run("-m", "django", "creatersakey")
    run("-m", "tests.oidc_op.setup_op", CALLBACK)
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
            raise RuntimeError("the test identity provider did not start")
        yield requests.get(f"{url}/openid/.well-known/openid-configuration", timeout=5).json()
    finally:
        server.terminate()
        server.wait(timeout=10)


def through_provider(authorize: str, username: str) -> str:
    """Sign in at the provider from its authorize URL; returns the callback URL it sends the browser back to."""
    browser = requests.Session()
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
    assert redirect.startswith(CALLBACK + "?"), redirect
    return redirect


def configure(settings: Any, discovery: dict) -> None:
    """Point the monitor (pytest-django's `settings`) at the running provider, with its groups mapped to roles."""
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "mi-monitor", "op-test-secret"
    settings.OIDC_OP_ISSUER = discovery["issuer"]
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = discovery["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = discovery["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = discovery["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = discovery["jwks_uri"]
    settings.OIDC_ROLE_MAP = "sec-team=security, grc=compliance"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "monitor.access.sso.RoleMappingOIDCBackend"]


def sign_in(client: Any, username: str) -> Any:
    """The whole round trip with Django's test `client` as our side; returns our callback's response."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302, start.content
    assert urlparse(start["Location"]).path.endswith("/openid/authorize")
    return client.get(through_provider(start["Location"], username).removeprefix("http://testserver"))
