"""Roles are Django groups; every view and endpoint names the roles it admits."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

ADMIN, SECURITY, COMPLIANCE, VIEWER = "admin", "security", "compliance", "viewer"
ROLES = (ADMIN, SECURITY, COMPLIANCE, VIEWER)
READ = ROLES
OPERATE = (ADMIN, SECURITY)
EXPORT = (ADMIN, SECURITY, COMPLIANCE)
CONFIGURE = (ADMIN,)
# Training-member record ids are personal data about the people the product protects: they are shown to the roles
# that may look a record up ("was this record exposed?", its CSV), every read goes to the trail, and no other role
# and nothing sent out of the product (email, Slack, webhooks, PagerDuty, Teams, the SIEM export) ever carries them.
MEMBER_IDS = EXPORT
MEMBER_IDS_READ = "member_ids.read"  # the trail action of each read


def role_groups(names: Iterable[str]) -> list[Any]:
    """The groups of these roles, created if missing: migration 0002 makes them, but a group deleted in the admin
    (or a database flushed since) must not turn every role grant into an error."""
    from django.contrib.auth.models import Group

    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
    return [Group.objects.get_or_create(name=name)[0] for name in names]


def roles_of(user: Any) -> set[str]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    if user.is_superuser:
        return set(ROLES)
    cached = getattr(user, "_monitor_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._monitor_roles = cached
    return cached


def has_role(user: Any, allowed: Iterable[str]) -> bool:
    return bool(roles_of(user) & set(allowed))


def may_see_member_ids(who: Any) -> bool:
    """Whether a user, or an API token, may see training-member record ids. A personal token has its owner's roles;
    ingestion and metrics tokens have none."""
    from monitor.models.tokens import ApiToken

    if isinstance(who, ApiToken):
        who = who.user if who.kind == ApiToken.USER else None
    return has_role(who, MEMBER_IDS)


def record_member_id_read(*, user: Any, ip: str | None, via: str, shown: Iterable[tuple[Any, int]]) -> None:
    """Put one read of member ids in the trail: who, where (`via`), which runs or alerts and how many ids each
    showed, never the ids themselves. Objects that showed none are left out; nothing is written if none showed any."""
    from monitor.trail.models import TrailEntry

    counts = {f"{obj._meta.label_lower}:{obj.pk}": n for obj, n in shown if n}
    if not counts:
        return
    only = next(iter(counts)) if len(counts) == 1 else ""
    object_type, _, object_id = only.partition(":")
    TrailEntry.record(action=MEMBER_IDS_READ, actor=user, ip=ip, object_type=object_type, object_id=object_id,
                      after={"via": via, "member_ids": sum(counts.values()), "objects": counts})


def role_required(*allowed: str) -> Callable:
    """Login first (anonymous users go to the login page), then one of `allowed` roles or 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, allowed):
                raise PermissionDenied(f"this page needs one of the roles: {', '.join(allowed)}")
            return view(request, *args, **kwargs)

        wrapped.allowed_roles = tuple(allowed)  # type: ignore[attr-defined]
        return wrapped

    return decorator


def roles_context(request: HttpRequest) -> dict[str, Any]:
    roles = roles_of(getattr(request, "user", None))
    return {
        "user_roles": sorted(roles),
        "can_configure": bool(roles & set(CONFIGURE)),
        "can_operate": bool(roles & set(OPERATE)),
        "can_export": bool(roles & set(EXPORT)),
    }


class RolePermissionBackend(ModelBackend):
    """The admin role may configure everything in the Django admin; other roles get only explicit permissions.
    With LOCAL_LOGIN off it checks no password at all (single sign-on only)."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
        from django.conf import settings

        if not settings.LOCAL_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if user_obj.is_active and has_role(user_obj, (ADMIN,)):
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if user_obj.is_active and has_role(user_obj, (ADMIN,)):
            return True
        return super().has_module_perms(user_obj, app_label)
