"""Single sign-on through OpenID Connect (mozilla-django-oidc), beside the local logins, when OIDC_RP_CLIENT_ID is
set. Every sign-in uses PKCE (S256) and a nonce; the ID token must come from OIDC_OP_ISSUER, for this client (`aud`,
`azp`), with `exp` and `iat`, and the userinfo answer must be about its `sub`. Roles come from a claim
(OIDC_ROLE_CLAIM, default `groups`) through OIDC_ROLE_MAP ("sec-team=security, grc=compliance"); they are set again
at every sign-in, so a group removed at the provider removes the role here, and an SSO account's API tokens expire
(SSO_TOKEN_MAX_AGE_DAYS). A refused sign-in lands on a page that says why, and the trail records it."""
from __future__ import annotations

import hashlib
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from monitor.access.roles import ROLES, role_groups
from monitor.models import SsoIdentity
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry

REFUSAL_KEY = "sso_refusal"


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


class SignInRefused(Exception):
    """The provider's answer failed one of our checks; the message says which, for the person and the trail."""


# Not settings an install may turn off: PKCE with S256 and a nonce on every sign-in.
ENFORCED = {"OIDC_USE_PKCE": True, "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256", "OIDC_USE_NONCE": True}
SUB_MAX_LENGTH = 255  # OpenID Connect Core 1.0, section 2: `sub` MUST NOT exceed 255 ASCII characters


def enforced_setting(attr: str, *args: Any) -> Any:
    return ENFORCED[attr] if attr in ENFORCED else import_from_settings(attr, *args)


def sso_username(*, issuer: str, subject: str) -> str:
    """`sso:<sub>` while it fits a username (150 characters by default); a longer sub gets `sso-sha256:` and the digest of
    issuer and sub. Local names cannot hold a colon and the two prefixes differ, so no two subjects share a name."""
    name = f"sso:{subject}"
    user_model = get_user_model()
    if len(name) <= user_model._meta.get_field(user_model.USERNAME_FIELD).max_length:
        return name
    return "sso-sha256:" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()


def id_token_problem(claims: dict[str, Any], *, issuer: str, client_id: str) -> str | None:
    """What is wrong with an ID token whose signature, `exp`, `iat` and nonce values PyJWT and mozilla-django-oidc
    have checked (OpenID Connect Core 1.0, section 3.1.3.7), or None."""
    # What the token says is quoted cut short: it goes on a page and into the trail.
    if claims.get("iss") != issuer:
        return f"the ID token was issued by {claims.get('iss')!s:.100}, not by the configured provider {issuer} (OIDC_OP_ISSUER)"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    if client_id not in audiences:
        return f"the ID token is meant for {', '.join(audiences) or 'no audience':.100}, not for this application ({client_id})"
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        return f"the ID token was obtained by another client (azp {azp!s:.100}), not by this application ({client_id})"
    if len(audiences) > 1 and azp is None:
        return "the ID token names several audiences but no authorized party (azp) to say it was issued to this application"
    for claim, meaning in (("exp", "expiry"), ("iat", "issue time")):
        if claim not in claims:
            return f"the ID token has no {claim} ({meaning}) claim"
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > SUB_MAX_LENGTH or not sub.isprintable():
        return f"the ID token's subject (sub) is missing, longer than {SUB_MAX_LENGTH} characters or not printable"
    return None


class RoleMappingOIDCBackend(OIDCAuthenticationBackend):
    """Users are keyed by the provider's `sub` (`sso_username`, never a local account's name; the whole sub and the
    issuer in SsoIdentity). Every refusal is recorded as `sso.denied` with its reason and shown on /sso/denied/."""

    get_settings = staticmethod(enforced_setting)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    @staticmethod
    def username_for(claims: dict[str, Any]) -> str:
        return sso_username(issuer=settings.OIDC_OP_ISSUER, subject=claims["sub"])

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        problem = id_token_problem(payload, issuer=settings.OIDC_OP_ISSUER, client_id=self.OIDC_RP_CLIENT_ID)
        if problem:
            raise SignInRefused(problem)
        return super().get_or_create_user(access_token, id_token, payload)

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload["sub"]:
            # The claims (groups, email) would be someone else's (OpenID Connect Core 1.0, section 5.3.2).
            raise SignInRefused("the provider's userinfo answer is about another subject than the ID token")
        return info

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
        SsoIdentity.objects.update_or_create(user=user, defaults={"issuer": settings.OIDC_OP_ISSUER,
                                                                  "subject": claims["sub"]})
        wanted = roles_from_claims(claims)
        user.groups.remove(*Group.objects.filter(name__in=set(ROLES) - wanted))
        user.groups.add(*role_groups(sorted(wanted)))
        user.__dict__.pop("_monitor_roles", None)
        return user

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        # Django asks every backend; only the callback view passes a nonce (and it always passes one).
        if request is None or "nonce" not in kwargs:
            return None
        try:
            if not kwargs.get("nonce") or not kwargs.get("code_verifier"):
                raise SignInRefused("this sign-in has no nonce or no PKCE verifier in its session; start again "
                                    "from the login page")
            user = super().authenticate(request, **kwargs)
        except SignInRefused as refusal:
            return self.refuse(request, str(refusal))
        except (SuspiciousOperation, jwt.InvalidTokenError) as error:  # signature, alg, exp, iat, nonce
            return self.refuse(request, f"the provider's ID token failed verification: {error}")
        except requests.HTTPError as error:
            return self.refuse(request, f"the provider refused the sign-in ({provider_error(error.response)})")
        except requests.RequestException as error:
            return self.refuse(request, f"the provider could not be reached ({type(error).__name__})")
        if user is None:
            return self.refuse(request, "the provider's answer named no single account")
        roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if not roles:
            TrailEntry.record(action="sso.denied", actor_name=user.get_username(), ip=client_ip(request),
                              after={"reason": "no group maps to a role", "claim": settings.OIDC_ROLE_CLAIM})
            return None
        TrailEntry.record(action="sso.signed_in", actor=user, ip=client_ip(request), after={"roles": sorted(roles)})
        return user

    @staticmethod
    def refuse(request: HttpRequest, reason: str) -> None:
        reason = reason.rstrip(".")  # the page and the trail end the sentence
        TrailEntry.record(action="sso.denied", actor_name="anonymous", ip=client_ip(request), after={"reason": reason})
        request.session[REFUSAL_KEY] = reason  # shown once by `denied`
        return None


def provider_error(response: requests.Response | None) -> str:
    """`HTTP 400 invalid_grant` from an OAuth error answer (RFC 6749, section 5.2), never its whole body."""
    if response is None:
        return "no answer"
    try:
        body = response.json()
    except ValueError:
        body = None
    code = str(body.get("error", ""))[:60] if isinstance(body, dict) else ""
    return f"HTTP {response.status_code} {code}".strip()


def _only_when_enabled(view: Any) -> Any:
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            raise Http404("single sign-on is not configured (OIDC_RP_CLIENT_ID)")
        return view(request, *args, **kwargs)

    return wrapped


class PkceAuthenticationRequestView(OIDCAuthenticationRequestView):
    """The authorize redirect, with a nonce and an S256 code challenge whatever the settings say."""

    get_settings = staticmethod(enforced_setting)


start = _only_when_enabled(PkceAuthenticationRequestView.as_view())
callback = _only_when_enabled(OIDCAuthenticationCallbackView.as_view())


def denied(request: HttpRequest) -> HttpResponse:
    """Where a sign-in without a mapped group, or one refused for its reason, lands."""
    return render(request, "registration/sso_denied.html",
                  {"claim": settings.OIDC_ROLE_CLAIM, "reason": request.session.pop(REFUSAL_KEY, None)})
