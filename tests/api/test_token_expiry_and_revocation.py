"""Personal tokens expire (API_TOKEN_MAX_AGE_DAYS, or `issue_token --expires-days N`; 0 = never), and a person
revokes their own token themselves: `DELETE /api/v1/tokens/{token}` (its prefix, or its id from `GET
/api/v1/tokens`); an admin any token. Each revocation is one `token.revoked` trail entry naming the prefix, never
the secret or its hash."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from monitor.models import ApiToken, SsoIdentity, TrailEntry
from monitor.models.tokens import hash_token
from tests.factories import make_model, make_user
from tests.workers import ROOT

pytestmark = pytest.mark.django_db


def issue(*arguments: str) -> tuple[ApiToken, str]:
    out = io.StringIO()
    call_command("issue_token", *arguments, stdout=out)
    clear = out.getvalue().strip()
    return ApiToken.objects.get(token_hash=hash_token(clear)), clear


def days_from_now(moment, days: int) -> bool:
    return abs(moment - (timezone.now() + timedelta(days=days))) < timedelta(minutes=1)


def as_bearer(clear: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


def trail_text() -> str:
    return " ".join(str((e.before, e.after, e.object_id)) for e in TrailEntry.objects.all())


# --- expiry --------------------------------------------------------------------------------------------------

def test_a_personal_token_expires_after_api_token_max_age_days_by_default(settings):
    settings.API_TOKEN_MAX_AGE_DAYS = 365
    token, _ = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    assert days_from_now(token.expires_at, 365)
    assert TrailEntry.objects.get(action="token.issued").after["expires_at"] == token.expires_at.isoformat()


def test_issue_token_takes_the_expiry_in_days():
    token, clear = issue("--user", "alice", "--role", "viewer", "--expires-days", "7")
    assert days_from_now(token.expires_at, 7)
    assert as_bearer(clear).get("/api/v1/models").status_code == 200


def test_zero_days_means_the_token_never_expires(settings):
    assert issue("--user", "alice", "--role", "viewer", "--expires-days", "0")[0].expires_at is None
    settings.API_TOKEN_MAX_AGE_DAYS = 0
    assert issue("--user", "bob", "--role", "viewer")[0].expires_at is None


def test_ingestion_and_metrics_tokens_expire_only_when_asked():
    make_model()
    assert issue("--model", "credit")[0].expires_at is None
    assert issue("--metrics")[0].expires_at is None
    assert days_from_now(issue("--model", "credit", "--expires-days", "30")[0].expires_at, 30)


def test_an_sso_accounts_token_never_outlives_sso_token_max_age_days(settings):
    settings.SSO_TOKEN_MAX_AGE_DAYS = 30
    user = make_user(role="viewer", username="ana")
    SsoIdentity.objects.create(user=user, issuer="https://idp.example", subject="ana")
    for asked in ("0", "365", "7"):
        token, _ = issue("--user", "ana", "--role", "viewer", "--expires-days", asked)
        assert days_from_now(token.expires_at, 7 if asked == "7" else 30), asked


@pytest.mark.parametrize("days", ["7.5", "-1", "ten", "1e3", ""])
def test_expires_days_must_be_a_whole_number_of_days(days):
    with pytest.raises(CommandError, match="expires-days"):
        issue("--user", "alice", "--role", "viewer", "--expires-days", days)
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("value", ["1.5", "-1", "a year"])
def test_a_bad_api_token_max_age_stops_the_start(tmp_path, value):
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ALLOWED_HOSTS"}}
    environment.update(API_TOKEN_MAX_AGE_DAYS=value, MONITOR_DATA_DIR=str(tmp_path),
                       DJANGO_SETTINGS_MODULE="monitor.settings")
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and f"API_TOKEN_MAX_AGE_DAYS={value!r}" in result.stderr


# --- revocation ----------------------------------------------------------------------------------------------

def test_a_person_revokes_their_own_token_and_the_trail_names_its_prefix_only():
    vera = make_user(role="viewer", username="vera")
    using, using_clear = ApiToken.issue(kind=ApiToken.USER, user=vera)
    lost, lost_clear = ApiToken.issue(kind=ApiToken.USER, user=vera)
    response = as_bearer(using_clear).delete(f"/api/v1/tokens/{lost.pk}", REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 200, response.content
    assert response.json()["prefix"] == lost.prefix and response.json()["revoked_at"]
    refused = as_bearer(lost_clear).get("/api/v1/models")
    assert refused.status_code == 401 and f"{lost.prefix}… was revoked on" in refused.json()["error"]
    [entry] = TrailEntry.objects.filter(action="token.revoked")
    assert (entry.actor_name, entry.ip, entry.object_id) == ("vera", "192.0.2.10", str(lost.pk))
    assert entry.after["prefix"] == lost.prefix and entry.after["user"] == "vera" and entry.after["revoked_at"]
    assert lost.token_hash not in trail_text() and lost_clear not in trail_text()
    assert as_bearer(using_clear).get("/api/v1/models").status_code == 200  # the other token is untouched


def test_a_token_is_named_by_its_prefix_too_and_may_revoke_itself():
    token, clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="compliance"))
    assert as_bearer(clear).delete(f"/api/v1/tokens/{token.prefix}").status_code == 200
    assert as_bearer(clear).get("/api/v1/models").status_code == 401


def test_a_person_cannot_revoke_someone_elses_token():
    other, other_clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    _, clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="security"))
    for key in (str(other.pk), other.prefix):
        response = as_bearer(clear).delete(f"/api/v1/tokens/{key}")
        assert response.status_code == 404 and "no token" in response.json()["error"]
    assert as_bearer(other_clear).get("/api/v1/models").status_code == 200
    assert not TrailEntry.objects.filter(action="token.revoked").exists()


def test_an_admin_revokes_any_token_an_ingestion_one_included():
    ingest, ingest_clear = ApiToken.issue(kind=ApiToken.INGEST, model=make_model())
    personal, _ = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer", username="vera"))
    _, admin_clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="admin", username="boss"))
    for token in (ingest, personal):
        assert as_bearer(admin_clear).delete(f"/api/v1/tokens/{token.pk}").status_code == 200
    assert as_bearer(ingest_clear).post("/api/v1/models/credit/queries", data="{}",
                                        content_type="application/json").status_code == 401
    entries = TrailEntry.objects.filter(action="token.revoked").order_by("seq")
    assert [(e.actor_name, e.after["prefix"], e.after["kind"]) for e in entries] == [
        ("boss", ingest.prefix, "ingest"), ("boss", personal.prefix, "user")]


def test_revoking_a_revoked_token_again_changes_nothing():
    token, clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="admin"))
    other, _ = ApiToken.issue(kind=ApiToken.USER, user=token.user)
    assert as_bearer(clear).delete(f"/api/v1/tokens/{other.pk}").status_code == 200
    again = as_bearer(clear).delete(f"/api/v1/tokens/{other.pk}")
    assert again.status_code == 409 and "already revoked" in again.json()["error"]
    assert TrailEntry.objects.filter(action="token.revoked").count() == 1


def test_a_prefix_two_tokens_share_is_refused_naming_the_way_out():
    first, _ = ApiToken.issue(kind=ApiToken.METRICS)
    second, _ = ApiToken.issue(kind=ApiToken.METRICS)
    assert first.prefix == second.prefix == "mim_metrics_"
    _, admin_clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="admin"))
    response = as_bearer(admin_clear).delete(f"/api/v1/tokens/{first.prefix}")
    assert response.status_code == 409 and "2 tokens" in response.json()["error"] and "id" in response.json()["error"]
    assert ApiToken.objects.active().filter(kind=ApiToken.METRICS).count() == 2


def test_an_ingestion_token_cannot_revoke_tokens():
    ingest, ingest_clear = ApiToken.issue(kind=ApiToken.INGEST, model=make_model())
    assert as_bearer(ingest_clear).delete(f"/api/v1/tokens/{ingest.pk}").status_code == 403


def test_a_person_lists_their_own_tokens_and_an_admin_all_without_secrets():
    vera = make_user(role="viewer", username="vera")
    mine, mine_clear = ApiToken.issue(kind=ApiToken.USER, user=vera)
    others, _ = ApiToken.issue(kind=ApiToken.INGEST, model=make_model())
    listed = as_bearer(mine_clear).get("/api/v1/tokens")
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [mine.pk]
    assert set(listed.json()[0]) == {"id", "kind", "prefix", "user", "model", "created_at", "last_used_at",
                                     "expires_at", "revoked_at"}
    _, admin_clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="admin"))
    every = as_bearer(admin_clear).get("/api/v1/tokens").json()
    assert {mine.pk, others.pk} <= {t["id"] for t in every}
    assert mine.token_hash not in str(every) and mine_clear not in str(every)


def test_revoking_by_saving_revoked_at_as_the_admin_and_a_shell_do_is_recorded():
    token, _ = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    token.revoked_at = timezone.now()
    token.save()
    [entry] = TrailEntry.objects.filter(action="token.revoked")
    assert entry.object_id == str(token.pk) and entry.after["revoked_at"]
