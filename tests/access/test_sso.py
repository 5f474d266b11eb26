"""Single sign-on against a real OpenID Connect provider (django-oidc-provider, tests/oidc_op, in its own process
on loopback): the whole authorization-code round trip, roles from the groups claim through OIDC_ROLE_MAP, a person
without a mapped group refused with a page that says so, local logins that an admin can turn off."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from monitor.trail.models import TrailEntry
from tests.factories import make_user
from tests.oidc_op.harness import configure, running_provider, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with running_provider(tmp_path_factory.mktemp("op")) as discovery:
        yield discovery


@pytest.fixture
def sso(settings, provider):
    configure(settings, provider)
    return provider


def test_sign_in_through_a_real_provider_maps_groups_to_roles(client, sso):
    landed = sign_in(client, "ana")
    assert landed.status_code == 302 and landed["Location"] == "/"
    overview = client.get("/")
    assert overview.status_code == 200
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
