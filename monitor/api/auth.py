"""Who may call what: bearer tokens (hashed, see ApiToken), the role checks every router makes before it reads a
body, per-token rate limits, and the model a request names."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from monitor.access import roles
from monitor.access.ratelimit import charge
from monitor.api.errors import ApiError
from monitor.models import ApiToken, RegisteredModel

MISSING = "no API token: send the header Authorization: Bearer <token> (an admin issues one with manage.py issue_token)"


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`. When it fails, `request.auth_problem` says why (answered with the 401);
    with `allowed` roles, a token without one of them is refused with 403 before the body is read."""

    def __init__(self, allowed: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.allowed = allowed

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        # Not ninja's own: it logs the whole header (the token) under DEBUG when the scheme is not Bearer.
        value = request.headers.get(self.header, "")
        found, problem = ApiToken.from_authorization(value) if value else (None, MISSING)
        if found is None:
            request.auth_problem = problem  # type: ignore[attr-defined]
            return None
        return self._admit(request, found)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return self.__call__(request)  # HttpBearer's hook; __call__ reads the header itself

    def _admit(self, request: HttpRequest, found: ApiToken) -> ApiToken:
        request.auth = found
        if self.allowed is not None:
            require_roles(request, self.allowed)
        return found


class SessionLogin(SessionAuth):
    """A signed-in user of the web pages. CSRF is checked only once there is a session user, so a client with
    no session and no token gets 401 (not ninja's 403 "CSRF check Failed")."""

    def __init__(self, allowed: tuple[str, ...] | None = None) -> None:
        super().__init__(csrf=True)
        self.allowed = allowed

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        user = super().__call__(request)
        if user is not None and self.allowed is not None:
            request.auth = user
            require_roles(request, self.allowed)
        return user


def needs(allowed: tuple[str, ...]) -> list:
    """`auth=` for an operation open to these roles: the role is checked with the credentials, before ninja
    validates parameters and body (a viewer posting a bad body gets 403, not 400)."""
    return [BearerToken(allowed), SessionLogin(allowed)]


SESSION_GET_REFUSED = ("this GET records who made it in the security trail, so it takes a bearer token only "
                       "(Authorization: Bearer <token>), never a browser session: signed in, use the page's form")


def refuse_session(request: HttpRequest) -> None:
    """A signed-in browser sends its session cookie on a GET that a link from another site starts, and a GET carries
    no CSRF token: a session may not make a GET that writes the trail (403, nothing written)."""
    if request.user.is_authenticated:
        raise ApiError(403, SESSION_GET_REFUSED)


def needs_token(allowed: tuple[str, ...]) -> list:
    """`auth=` for a GET that writes the security trail (a lookup, an export, a download): bearer tokens of these
    roles only; a browser session gets 403 saying so, and anonymous callers the usual 401."""
    return [BearerToken(allowed), refuse_session]


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
