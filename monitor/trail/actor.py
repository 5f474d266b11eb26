"""Who is acting, for trail entries written far from the request (model signals): the request being served, kept
in a context variable by `TrailActorMiddleware`, or — in a shell, a management command or a worker — the process's
operating-system user."""
from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from monitor.access.client_address import client_address
from monitor.models.tokens import ApiToken

_request: ContextVar[HttpRequest | None] = ContextVar("trail_request", default=None)


@dataclass(frozen=True)
class Actor:
    user: Any  # the signed-in user, or None
    name: str
    ip: str | None


class TrailActorMiddleware:
    """Keeps the request being served where the trail's signal receivers find it (after AuthenticationMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with serving(request):
            return self.get_response(request)


@contextmanager
def serving(request: HttpRequest) -> Iterator[None]:
    """Changes made inside the block are the request's (its user, its address)."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def process_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return f"uid {os.getuid()}"


def current_actor() -> Actor:
    """The person behind the current request (an API token's owner, else the session's user), "anonymous" for a
    request nobody signed in to, or "system:<OS user>" outside any request."""
    request = _request.get()
    if request is None:
        return Actor(user=None, name=f"system:{process_user()}"[:150], ip=None)
    ip = client_address(request)
    # django-ninja sets request.auth once the endpoint's auth ran: a token, or the session's user.
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        if auth.kind == ApiToken.USER and auth.user_id:
            return Actor(user=auth.user, name=auth.user.get_username(), ip=ip)
        return Actor(user=None, name=f"token:{auth.prefix}", ip=ip)
    user = auth if getattr(auth, "is_authenticated", False) else getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Actor(user=user, name=user.get_username(), ip=ip)
    return Actor(user=None, name="anonymous", ip=ip)
