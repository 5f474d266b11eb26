"""Security-relevant events from Django itself (logins) written to the hash-chained audit log."""
from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from monitor.trail.models import TrailEntry


def client_ip(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    TrailEntry.record(action="auth.login", actor=user, ip=client_ip(request), obj=user)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        TrailEntry.record(action="auth.logout", actor=user, ip=client_ip(request), obj=user)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    # The username tried is evidence; the password never is (Django already masks it).
    TrailEntry.record(action="auth.login_failed", actor_name="anonymous", ip=client_ip(request),
                         object_type="auth.user", object_id=str(credentials.get("username", ""))[:64])


@receiver(user_locked_out)
def _locked_out(sender: Any, request: Any, username: Any = None, ip_address: Any = None, **kwargs: Any) -> None:
    TrailEntry.record(action="auth.locked_out", actor_name="anonymous", ip=client_ip(request),
                         object_type="auth.user", object_id=str(username or "")[:64])
