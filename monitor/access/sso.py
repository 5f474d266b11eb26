"""Single sign-on through OpenID Connect (mozilla-django-oidc), beside the local logins, when OIDC_RP_CLIENT_ID is
set. Roles come from a claim (OIDC_ROLE_CLAIM, default `groups`) through OIDC_ROLE_MAP ("sec-team=security,
grc=compliance"); they are set again at every sign-in, so a group removed at the provider removes the role here.
A person whose groups map to no role is not signed in: they see a page that says so, and the trail records it."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from monitor.access.roles import ROLES, role_groups
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


def local_login() -> bool:
    return bool(settings.LOCAL_LOGIN)


def parse_role_map(text: str) -> dict[str, str]:
    """"sec-team=security, grc=compliance" -> {"sec-team": "security", "grc": "compliance"}; refuses unknown roles."""
    mapping = {}
    for pair in (p.strip() for p in text.split(",") if p.strip()):
        group, _, role = pair.partition("=")
        if not group.strip() or role.strip() not in ROLES:
            raise ImproperlyConfigured(f"OIDC_ROLE_MAP entry {pair!r}: use group=role with role one of {', '.join(ROLES)}")
        mapping[group.strip()] = role.strip()
    return mapping


def roles_from_claims(claims: dict[str, Any]) -> set[str]:
    value = claims.get(settings.OIDC_ROLE_CLAIM) or []
    groups = value.replace(",", " ").split() if isinstance(value, str) else [str(g) for g in value]
    mapping = parse_role_map(settings.OIDC_ROLE_MAP)
    return {mapping[group] for group in groups if group in mapping}


class RoleMappingOIDCBackend(OIDCAuthenticationBackend):
    """Users are keyed by the provider's `sub` (username `sso:<sub>`, never a local account's name)."""

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    @staticmethod
    def username_for(claims: dict[str, Any]) -> str:
        return f"sso:{claims['sub']}"[:150]

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(username=self.username_for(claims))

    def create_user(self, claims: dict[str, Any]) -> Any:
        user = self.UserModel.objects.create_user(self.username_for(claims), email=claims.get("email") or "")
        user.set_unusable_password()
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        user.first_name = str(claims.get("preferred_username") or claims.get("name") or "")[:150]
        user.email = claims.get("email") or user.email
        user.save()
        wanted = roles_from_claims(claims)
        user.groups.remove(*Group.objects.filter(name__in=set(ROLES) - wanted))
        user.groups.add(*role_groups(sorted(wanted)))
        user.__dict__.pop("_monitor_roles", None)
        return user

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        user = super().authenticate(request, **kwargs)
        if user is None:
            return None
        roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if not roles:
            TrailEntry.record(action="sso.denied", actor_name=user.get_username(), ip=client_ip(request) if request else None,
                              after={"reason": "no group maps to a role", "claim": settings.OIDC_ROLE_CLAIM})
            return None
        TrailEntry.record(action="sso.signed_in", actor=user, ip=client_ip(request) if request else None,
                          after={"roles": sorted(roles)})
        return user


def _only_when_enabled(view: Any) -> Any:
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            raise Http404("single sign-on is not configured (OIDC_RP_CLIENT_ID)")
        return view(request, *args, **kwargs)

    return wrapped


start = _only_when_enabled(OIDCAuthenticationRequestView.as_view())
callback = _only_when_enabled(OIDCAuthenticationCallbackView.as_view())


def denied(request: HttpRequest) -> HttpResponse:
    """Where a sign-in without a mapped group (or a failed one) lands."""
    return render(request, "registration/sso_denied.html", {"claim": settings.OIDC_ROLE_CLAIM})
