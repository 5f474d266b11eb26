"""Who may call what: bearer tokens (hashed, see ApiToken), the role checks every router makes before it reads a
body, per-token rate limits, and the model a request names."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import HttpBearer

from monitor.access import roles
from monitor.access.ratelimit import charge
from monitor.api.errors import ApiError
from monitor.models import ApiToken, RegisteredModel


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return ApiToken.authenticate(token)


def request_user(request: HttpRequest) -> AbstractBaseUser | None:
    """The person behind the request: a user token's owner or the session's user; None for an ingestion token."""
    auth = request.auth
    if isinstance(auth, ApiToken):
        return auth.user if auth.kind == ApiToken.USER else None
    return auth


def require_roles(request: HttpRequest, allowed: tuple[str, ...]) -> None:
    auth = request.auth
    if isinstance(auth, ApiToken) and auth.kind == ApiToken.INGEST:
        raise ApiError(403, "an ingestion token may only log queries for its own model")
    if not roles.has_role(request_user(request), allowed):
        raise ApiError(403, f"this endpoint needs one of the roles: {', '.join(allowed)}")


def model_for_write(request: HttpRequest, slug: str, *, user_roles: tuple[str, ...]) -> RegisteredModel:
    """Ingestion tokens write only their own model; users need one of `user_roles`."""
    auth = request.auth
    if isinstance(auth, ApiToken) and auth.kind == ApiToken.INGEST:
        if auth.model.slug != slug:
            raise ApiError(403, "this ingestion token belongs to another model")
        return auth.model
    require_roles(request, user_roles)
    return get_model(slug)


def charge_token(request: HttpRequest, rows: int) -> None:
    """Rows sent with an API token count against its per-minute limit (people on a session are not limited)."""
    if isinstance(request.auth, ApiToken):
        charge(request.auth, rows)


def get_model(slug: str) -> RegisteredModel:
    # PostgreSQL text cannot hold NUL, so no slug has one, and the query would fail rather than find nothing.
    model = RegisteredModel.objects.filter(slug=slug).first() if "\x00" not in slug else None
    if model is None:
        raise ApiError(404, f"unknown model {slug!r:.80}")
    return model
