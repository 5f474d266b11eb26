"""Bearer tokens: hashed at rest, scoped to their model or their user's role."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from monitor.models import ApiToken, QueryLog
from tests.factories import ingest_token, make_model, query, user_token

pytestmark = pytest.mark.django_db


def test_ingestion_token_writes_only_its_own_model(api_as, model):
    other = make_model(slug="other")
    api = api_as(ingest_token(model=model))
    assert api.post("/api/v1/models/credit/queries", {"queries": [query()]}).status_code == 201
    response = api.post("/api/v1/models/other/queries", {"queries": [query()]})
    assert response.status_code == 403
    assert "another model" in response.json()["error"]
    assert not QueryLog.objects.filter(model=other).exists()


@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/models/credit"])
def test_ingestion_token_is_refused_on_read_endpoints(api_as, model, path):
    response = api_as(ingest_token(model=model)).get(path)
    assert response.status_code == 403
    assert "ingestion token" in response.json()["error"]


def test_ingestion_token_of_another_model_cannot_probe_slugs(api_as, model):
    response = api_as(ingest_token(model=model)).post("/api/v1/models/does-not-exist/queries", {"queries": [query()]})
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["admin", "security", "compliance", "viewer"])
def test_every_role_reads_models(api_as, model, role):
    response = api_as(user_token(role=role)).get("/api/v1/models/credit")
    assert response.status_code == 200
    assert response.json()["slug"] == "credit"


@pytest.mark.parametrize(("role", "status"), [("admin", 201), ("security", 403), ("compliance", 403), ("viewer", 403)])
def test_only_admins_log_queries_with_a_personal_token(api_as, model, role, status):
    assert api_as(user_token(role=role)).post("/api/v1/models/credit/queries", {"queries": [query()]}).status_code == status


def test_user_without_a_role_is_forbidden(api_as, model):
    assert api_as(user_token(role=None)).get("/api/v1/models").status_code == 403


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer ", "Basic abc"])
def test_missing_or_wrong_token_is_401_with_json(client, model, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/v1/models", **extra)
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]


def test_revoked_token_is_refused(api_as, model):
    clear = ingest_token(model=model)
    ApiToken.objects.update(revoked_at=timezone.now())
    assert api_as(clear).post("/api/v1/models/credit/queries", {"queries": [query()]}).status_code == 401


def test_inactive_user_token_is_refused(api_as, model):
    clear = user_token(role="admin")
    ApiToken.objects.get().user.__class__.objects.update(is_active=False)
    assert api_as(clear).get("/api/v1/models").status_code == 401


def test_tokens_are_stored_hashed_and_printed_once(model, capsys):
    call_command("issue_token", "--model", "credit")
    clear = capsys.readouterr().out.strip()
    assert clear.startswith("mim_ingest_")
    stored = ApiToken.objects.get()
    assert clear not in (stored.token_hash, stored.prefix)
    assert len(stored.token_hash) == 64 and stored.prefix == clear[:12]
    assert ApiToken.authenticate(clear) == stored


def test_issue_token_for_a_user_creates_it_in_the_role(db, capsys):
    call_command("issue_token", "--user", "alice", "--role", "security")
    clear = capsys.readouterr().out.strip()
    token = ApiToken.authenticate(clear)
    assert token.user.username == "alice"
    assert list(token.user.groups.values_list("name", flat=True)) == ["security"]
    assert not token.user.has_usable_password()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "missing"], "no model with slug 'missing'"),
    (["--user", "bob"], "--user needs --role"),
])
def test_issue_token_errors_are_clear(db, args, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message):
        call_command("issue_token", *args)
    assert not ApiToken.objects.exists()


def test_session_login_works_for_api_reads(client, model):
    from tests.factories import make_user

    client.force_login(make_user(role="viewer"))
    assert client.get("/api/v1/models").status_code == 200


def test_openapi_schema_and_docs_are_served(client, db):
    from tests.factories import make_user

    assert client.get("/api/v1/openapi.json").status_code == 302  # to the login page, like every page
    client.force_login(make_user(role="viewer"))
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/models/{slug}/queries" in schema["paths"]
    body = schema["paths"]["/api/v1/models/{slug}/queries"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(body)
    assert client.get("/api/v1/docs").status_code == 200


def test_the_served_openapi_json_has_no_duplicate_keys(client, db):
    """Swagger UI refuses a schema with a repeated key (ninja once merged 200 and "200" side by side)."""
    import json

    from tests.factories import make_user

    client.force_login(make_user(role="viewer"))
    repeated = []

    def no_repeats(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        repeated.extend({key for key in keys if keys.count(key) > 1})
        return dict(pairs)

    json.loads(client.get("/api/v1/openapi.json").content, object_pairs_hook=no_repeats)
    assert repeated == []
