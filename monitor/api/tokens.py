"""API tokens, self-service: a person lists and revokes their own personal tokens; an admin sees and revokes any
(a leaked ingestion token included). Issuing stays with the admin (`manage.py issue_token`)."""
from __future__ import annotations

import re

from django.http import HttpRequest
from ninja import Router

from monitor.access import roles
from monitor.api.auth import needs, request_user
from monitor.api.errors import ApiError
from monitor.api.schemas import TokenOut
from monitor.models import ApiToken
from monitor.models.tokens import ApiTokenQuerySet
from monitor.trail.hooks import client_ip

router = Router(tags=["tokens"])


def visible_tokens(request: HttpRequest) -> ApiTokenQuerySet:
    """An admin's: every token; anyone else's: their own personal tokens (others' do not exist for them)."""
    user = request_user(request)
    tokens = ApiToken.objects.select_related("user", "model").order_by("id")
    if roles.has_role(user, roles.CONFIGURE):
        return tokens
    return tokens.filter(kind=ApiToken.USER, user=user)


def named(tokens: ApiTokenQuerySet, key: str) -> ApiToken:
    """The one token `key` names: its id (as `GET /api/v1/tokens` lists it) or its prefix."""
    if re.fullmatch(r"[0-9]{1,18}", key):
        matching = tokens.filter(pk=int(key))
    else:  # PostgreSQL text cannot hold NUL: no prefix has one, and the query would fail rather than find nothing
        matching = tokens.filter(prefix=key) if "\x00" not in key else tokens.none()
    found = list(matching[:2])
    if not found:
        raise ApiError(404, f"no token {key!r:.40} you may revoke (name it by its prefix, or by its id from "
                            "GET /api/v1/tokens)")
    if len(found) > 1:
        raise ApiError(409, f"{matching.count()} tokens start with {key!r:.40}; name the one to revoke by its id "
                            "(GET /api/v1/tokens lists them)")
    return found[0]


@router.get("/tokens", auth=needs(roles.READ), summary="API tokens: your own, or every one for an admin",
            response={200: list[TokenOut], 403: dict})
def list_tokens(request: HttpRequest) -> list[dict]:
    return [token.summary() for token in visible_tokens(request)]


@router.delete("/tokens/{token}", auth=needs(roles.READ), summary="Revoke an API token",
               response={200: TokenOut, 403: dict, 404: dict, 409: dict})
def revoke_token(request: HttpRequest, token: str) -> dict:
    """`token` is the token's prefix or its id. A person revokes their own personal tokens (the one in use too),
    an admin any token. Recorded in the trail as `token.revoked` with the prefix; a revoked token answers 401."""
    found = named(visible_tokens(request), token)
    if not found.revoke(actor=request_user(request), ip=client_ip(request)):
        found.refresh_from_db(fields=["revoked_at"])
        raise ApiError(409, f"the token {found.prefix}… was already revoked on {found.revoked_at:%Y-%m-%d %H:%M} UTC")
    return found.summary()
