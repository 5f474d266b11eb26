"""Missing or bad credentials on every API endpoint, as a client sends them: no Authorization header (a token
forgotten, also on a POST that ninja would otherwise refuse as a failed CSRF check), a header in another scheme,
an unknown token, a revoked one, one of a deactivated user. Each answers 401 JSON with `WWW-Authenticate:
Bearer` and a sentence saying what is wrong. Roles are checked before the body: a viewer posting a bad body
gets 403, not 400."""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from monitor.api import api
from monitor.models import ApiToken
from tests.factories import make_user, user_token

pytestmark = pytest.mark.django_db


def endpoints() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema(path_prefix="/api/v1/")
    found = [(method.upper(), re.sub(r"\{[^}]+\}", "1", path))
             for path, item in schema["paths"].items() for method in item]
    assert len(found) >= 18, found
    return found


def send(client: Client, method: str, path: str, **headers):
    if path.endswith("evidence.zip") and "/models/" in path:
        path += "?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
    call = getattr(client, method.lower())
    if method in ("POST", "PATCH", "PUT"):
        return call(path, data="{}", content_type="application/json", **headers)
    return call(path, **headers)


def assert_unauthorized(response, *, says: str, invalid_token: bool) -> None:
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert says in response.json()["error"], response.json()
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == invalid_token, challenge


@pytest.mark.parametrize(("method", "path"), endpoints())
def test_no_token_is_401_saying_the_token_is_missing(method, path):
    assert_unauthorized(send(Client(enforce_csrf_checks=True), method, path),
                        says="no API token: send the header Authorization: Bearer <token>", invalid_token=False)


def test_bad_credentials_say_what_is_wrong_on_every_endpoint():
    make_user(role="viewer", username="gone")
    revoked = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="admin", username="old"))
    ApiToken.objects.filter(pk=revoked[0].pk).update(revoked_at=timezone.now())
    inactive_user = make_user(role="admin", username="left")
    inactive = ApiToken.issue(kind=ApiToken.USER, user=inactive_user)[1]
    inactive_user.is_active = False
    inactive_user.save()
    cases = [
        ({"HTTP_AUTHORIZATION": "Basic YWRtaW46YWRtaW4="}, "must be 'Bearer <token>'"),
        ({"HTTP_AUTHORIZATION": "Bearer"}, "must be 'Bearer <token>'"),
        ({"HTTP_AUTHORIZATION": "Bearer mim_user_not-a-real-token"}, "not valid (no such token)"),
        ({"HTTP_AUTHORIZATION": f"Bearer {revoked[1]}"}, f"{revoked[0].prefix}… was revoked on"),
        ({"HTTP_AUTHORIZATION": f"Bearer {inactive}"}, "belongs to a deactivated user account"),
    ]
    for method, path in endpoints():
        for headers, says in cases:
            assert_unauthorized(send(Client(), method, path, **headers), says=says, invalid_token=True)


def test_an_unknown_token_never_echoes_what_was_sent():
    response = Client().get("/api/v1/models", HTTP_AUTHORIZATION="Bearer mim_user_secret-value-123")
    assert response.status_code == 401 and "secret-value-123" not in response.content.decode()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/channels", '{"kind": 7}'),
    ("POST", "/api/v1/alerts/1/mute", '{"until": "not a time"}'),
    ("POST", "/api/v1/alerts/1/acknowledge", '{"note": ['),
    ("GET", "/api/v1/alerts?limit=many", None),
    ("GET", "/api/v1/audits/not-a-number", None),
])
def test_a_viewer_with_a_bad_request_gets_403_not_400(model, method, path, body):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {user_token(role='viewer' if method == 'POST' else None)}"}
    client = Client()
    if method == "POST":
        response = client.post(path, data=body, content_type="application/json", **headers)
    else:
        response = client.get(path, **headers)
    assert response.status_code == 403, (response.status_code, response.content[:300])
    assert "needs one of the roles" in response.json()["error"]


def test_an_ingestion_token_on_a_read_endpoint_with_a_bad_parameter_gets_403(model):
    from tests.factories import ingest_token

    response = Client().get("/api/v1/alerts?limit=many", HTTP_AUTHORIZATION=f"Bearer {ingest_token(model=model)}")
    assert response.status_code == 403
    assert response.json()["error"] == "an ingestion token may only log queries for its own model"


def test_a_signed_in_user_without_the_csrf_token_still_gets_403_csrf(model):
    """The 401 for a forgotten token must not open a way around CSRF for a browser session."""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user(role="admin"))
    response = strict.post("/api/v1/models/credit/audits")
    assert response.status_code == 403 and "CSRF" in response.content.decode()
