"""Single sign-on that trusts only what it checked (issue 27, finding 7), against the real test provider
(tests/oidc_op): PKCE with S256 on every sign-in, which the provider requires; the ID token's issuer, audience,
authorized party, expiry, issue time and nonce; a userinfo answer about the ID token's own subject; one account per
subject up to OpenID Connect's 255 characters; personal API tokens of SSO accounts that expire. Every refusal
lands on a page that says why, creates no account, and is in the trail."""
from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from monitor.access.sso import sso_username
from monitor.models import ApiToken, SsoIdentity
from monitor.trail.models import TrailEntry
from tests.factories import make_user
from tests.oidc_op.harness import CALLBACK, configure, running_provider, sign_in, through_provider
from tests.oidc_op.quirks import LONG_SUBJECTS

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with running_provider(tmp_path_factory.mktemp("op")) as discovery:
        yield discovery


@pytest.fixture
def sso(settings, provider):
    configure(settings, provider)
    return provider


def sso_accounts() -> list:
    return list(get_user_model().objects.filter(sso_identity__isnull=False).order_by("id"))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def redeem(sso: dict, code: str, **extra: str) -> requests.Response:
    """Our token request, sent by hand: as an attacker holding a stolen code would send it."""
    return requests.post(sso["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "client_id": "mi-monitor", "client_secret": "op-test-secret", **extra})


def code_of(callback_url: str) -> str:
    return parse_qs(urlparse(callback_url).query)["code"][0]


def test_the_authorize_request_carries_the_s256_challenge_of_a_verifier_kept_in_the_session(client, sso):
    start = client.get("/oidc/authenticate/")
    query = parse_qs(urlparse(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    verifier = client.session["oidc_states"][query["state"][0]]["code_verifier"]
    assert len(verifier) >= 43 and query["code_challenge"] == [s256(verifier)]


def test_the_provider_redeems_a_code_only_with_its_verifier(client, sso):
    for sent in ({}, {"code_verifier": "a-verifier-someone-guessed-" + "x" * 20}):
        start = client.get("/oidc/authenticate/")
        refused = redeem(sso, code_of(through_provider(start["Location"], "ana")), **sent)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", (sent, refused.text)
    start = client.get("/oidc/authenticate/")
    state = parse_qs(urlparse(start["Location"]).query)["state"][0]
    verifier = client.session["oidc_states"][state]["code_verifier"]
    assert redeem(sso, code_of(through_provider(start["Location"], "ana")), code_verifier=verifier).status_code == 200


def test_the_provider_refuses_a_code_asked_for_without_a_challenge(client, sso):
    start = urlparse(client.get("/oidc/authenticate/")["Location"])
    query = {k: v[0] for k, v in parse_qs(start.query).items() if not k.startswith("code_challenge")}
    refused = redeem(sso, code_of(through_provider(urlunparse(start._replace(query=urlencode(query))), "ana")))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def refusal_shown(client: Client, username: str) -> str:
    """Sign in as `username`; the sign-in must be refused. Returns the denied page's text."""
    landed = sign_in(client, username)
    assert landed.status_code == 302 and landed["Location"] == "/sso/denied/", (landed.status_code, landed.get("Location"))
    page = client.get("/sso/denied/")
    assert page.status_code == 200
    assert client.get("/").status_code == 302  # not signed in
    assert sso_accounts() == []
    return page.content.decode()


@pytest.mark.parametrize(("username", "says"), [
    ("foreign-iss", "was issued by https://idp.example/openid, not by the configured provider"),
    ("foreign-aud", "is meant for another-app, not for this application (mi-monitor)"),
    ("shared-aud", "names several audiences but no authorized party (azp)"),
    ("foreign-azp", "was obtained by another client (azp another-app)"),
    ("no-exp", "has no exp (expiry) claim"),
    ("no-iat", "has no iat (issue time) claim"),
    ("stale", "Signature has expired"),
    ("wrong-nonce", "JWT Nonce verification failed"),
    ("other-sub", "userinfo answer is about another subject than the ID token"),
])
def test_an_answer_from_the_provider_that_fails_a_check_is_refused_saying_why(client, sso, username, says):
    page = refusal_shown(client, username)
    assert says in page, page
    entry = TrailEntry.objects.get(action="sso.denied")
    assert says in entry.after["reason"] and entry.ip == "127.0.0.1"


def test_several_audiences_sign_in_when_this_client_is_the_authorized_party(client, sso):
    landed = sign_in(client, "shared-aud-azp")
    assert landed.status_code == 302 and landed["Location"] == "/"


def test_a_sign_in_started_without_a_verifier_is_refused(client, sso):
    start = client.get("/oidc/authenticate/")
    state = parse_qs(urlparse(start["Location"]).query)["state"][0]
    session = client.session
    session["oidc_states"][state]["code_verifier"] = None
    session.save()
    landed = client.get(through_provider(start["Location"], "ana").removeprefix("http://testserver"))
    assert landed["Location"] == "/sso/denied/"
    assert "no PKCE verifier" in client.get("/sso/denied/").content.decode()
    assert sso_accounts() == []


def test_two_255_character_subjects_alike_in_their_first_200_get_two_accounts(client, sso):
    for username in ("long-a", "long-b", "long-a"):
        landed = sign_in(client, username)
        assert landed.status_code == 302 and landed["Location"] == "/"
        client.logout()
    accounts = sso_accounts()
    assert [a.sso_identity.subject for a in accounts] == [LONG_SUBJECTS["long-a"], LONG_SUBJECTS["long-b"]]
    assert {a.sso_identity.issuer for a in accounts} == {sso["issuer"]}
    assert all(len(a.username) <= 150 for a in accounts) and len({a.username for a in accounts}) == 2


def test_a_short_subject_keeps_its_readable_name_and_a_long_one_never_takes_a_short_ones():
    issuer = "https://idp.example"
    assert sso_username(issuer=issuer, subject="ana") == "sso:ana"
    assert sso_username(issuer=issuer, subject="y" * 146) == "sso:" + "y" * 146  # 150 characters: still fits
    hashed = sso_username(issuer=issuer, subject="y" * 147)
    assert not hashed.startswith("sso:") and len(hashed) <= 150
    assert hashed != sso_username(issuer=issuer + "/other", subject="y" * 147)


def api_models(clear: str):
    return Client().get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {clear}")


def test_personal_tokens_of_an_sso_account_expire_after_sso_token_max_age_days(client, sso, settings):
    settings.SSO_TOKEN_MAX_AGE_DAYS = 30
    assert sign_in(client, "ana")["Location"] == "/"
    ana = sso_accounts()[0]
    token, clear = ApiToken.issue(kind=ApiToken.USER, user=ana)
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert TrailEntry.objects.get(action="token.issued").after["expires_at"] == token.expires_at.isoformat()
    assert api_models(clear).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = api_models(clear)
    assert refused.status_code == 401 and f"{token.prefix}… expired on" in refused.json()["error"]


def test_a_local_accounts_token_does_not_expire_unless_given_an_expiry(settings):
    settings.API_TOKEN_MAX_AGE_DAYS = 0  # personal tokens expire by default (tests/api/test_token_expiry_and_revocation.py)
    token, clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    assert token.expires_at is None and api_models(clear).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))
    refused = api_models(clear)
    assert refused.status_code == 401 and "expired on" in refused.json()["error"]


def test_an_sso_account_is_recognised_by_its_identity_not_its_name(settings):
    settings.SSO_TOKEN_MAX_AGE_DAYS = 7
    user = make_user(role="viewer")
    SsoIdentity.objects.create(user=user, issuer="https://idp.example", subject="z" * 255)
    assert ApiToken.issue(kind=ApiToken.USER, user=user)[0].expires_at is not None


@pytest.mark.django_db(transaction=True)
def test_accounts_and_tokens_made_before_identities_were_kept_become_sso_ones(settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    graph = MigrationExecutor(connection).loader.graph
    ours = next(key for key in graph.nodes if key[0] == "monitor" and key[1].endswith("_sso_identity_token_expiry"))
    old = migrate(sorted(parent.key for parent in graph.node_map[ours].parents if parent.key[0] == "monitor"))
    try:
        User, Token = old.get_model("auth", "User"), old.get_model("monitor", "ApiToken")
        for username in ("sso:legacy-sub", "vera"):
            Token.objects.create(kind="user", user=User.objects.create(username=username), token_hash=username * 4,
                                 prefix=username[:12])
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    legacy = get_user_model().objects.get(username="sso:legacy-sub")
    assert (legacy.sso_identity.issuer, legacy.sso_identity.subject) == ("", "legacy-sub")
    expires = ApiToken.objects.get(user=legacy).expires_at
    assert abs(expires - (timezone.now() + timedelta(days=settings.SSO_TOKEN_MAX_AGE_DAYS))) < timedelta(minutes=1)
    assert ApiToken.objects.get(user__username="vera").expires_at is None
    assert not SsoIdentity.objects.filter(user__username="vera").exists()
