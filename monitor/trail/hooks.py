"""Security-relevant events from Django itself (logins) written to the hash-chained audit log.

Failed logins are folded per (address, minute) so that a flood cannot fill the trail, each entry taken under its
global head lock: a window's first failure and first lockout are entries, later ones only count in its
LoginFailureWindow row, and that count becomes one `auth.login_failures` entry when the address's next minute starts
or when beat's `fold_login_failures` finds the window closed. N failures in a minute cost at most three entries.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from monitor.access.client_address import client_address
from monitor.trail.models import LoginFailureWindow, TrailEntry

# Usernames a window keeps (each cut to the trail's object_id length): enough to tell guessing from a typo,
# bounded so that a flood of random names stays one small row.
USERNAMES_PER_WINDOW = 20
USERNAME_LENGTH = 64


def client_ip(request: Any) -> str | None:
    """The client's address, X-Forwarded-For read only from TRUSTED_PROXIES (monitor/access/client_address.py)."""
    return client_address(request)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def note_failed_login(*, address: str | None, username: str, now: datetime) -> None:
    """One failed login (also one refused while locked out)."""
    _note(address=address, username=username, now=now, lockout=False)


def note_lockout(*, address: str | None, username: str, now: datetime) -> None:
    """One lockout signal: the failure that locked the address or username out, or one refused while locked out."""
    _note(address=address, username=username, now=now, lockout=True)


def _note(*, address: str | None, username: str, now: datetime, lockout: bool) -> None:
    minute, username = minute_of(now), username[:USERNAME_LENGTH]
    with transaction.atomic():
        # The window's row lock, not the trail's head lock, orders the failures of one address and minute.
        window, created = LoginFailureWindow.objects.select_for_update().get_or_create(
            address=address or "", minute=minute)
        if created:  # the address's earlier minutes are over: their counts go in before this minute's first entry
            LoginFailureWindow.objects.filter(address=window.address).fold(now=now)
        first = (window.locked_out if lockout else window.failures) == 0
        if lockout:
            window.locked_out += 1
        else:
            window.failures += 1
        if username not in window.usernames:
            if len(window.usernames) < USERNAMES_PER_WINDOW:
                window.usernames = [*window.usernames, username]
            else:
                window.more_usernames = True
        window.save(update_fields=["failures", "locked_out", "usernames", "more_usernames"])
        if first:
            # The username tried is evidence; the password never is (Django already masks it).
            TrailEntry.record(action="auth.locked_out" if lockout else "auth.login_failed", actor_name="anonymous",
                              ip=address, object_type="auth.user", object_id=username,
                              after={"minute": minute.isoformat()})


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    TrailEntry.record(action="auth.login", actor=user, ip=client_ip(request), obj=user)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        TrailEntry.record(action="auth.logout", actor=user, ip=client_ip(request), obj=user)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    note_failed_login(address=client_ip(request), username=str(credentials.get("username", "")), now=timezone.now())


@receiver(user_locked_out)
def _locked_out(sender: Any, request: Any, username: Any = None, ip_address: Any = None, **kwargs: Any) -> None:
    note_lockout(address=client_ip(request), username=str(username or ""), now=timezone.now())
