"""API tokens: stored as SHA-256, scoped to a model (ingestion) or a user (personal). Personal tokens expire
(API_TOKEN_MAX_AGE_DAYS, or their own expiry), those of single sign-on accounts within SSO_TOKEN_MAX_AGE_DAYS at most,
since the provider, not this app, knows whether the person still belongs. A person revokes their own (`revoke`)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from monitor.models.identities import SsoIdentity
from monitor.models.registry import RegisteredModel


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_sso_account(user: Any) -> bool:
    return user is not None and SsoIdentity.objects.filter(user=user).exists()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True).exclude(expires_at__lte=timezone.now())


class ApiToken(models.Model):
    """Bearer tokens, stored as SHA-256 (they are 256-bit random, so a fast hash is enough)."""

    INGEST, USER, METRICS = "ingest", "user", "metrics"
    KINDS = [(INGEST, "model ingestion"), (USER, "personal API"), (METRICS, "Prometheus scrape (GET /metrics only)")]

    kind = models.CharField(max_length=8, choices=KINDS)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="first characters, to tell tokens apart")
    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False,
                                      help_text="refused from then on; set for personal tokens of SSO accounts")
    queries_per_minute = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="rows this token may log or predict per minute; empty uses the TOKEN_QUERIES_PER_MINUTE setting")

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="token_has_one_owner",
                condition=(models.Q(kind="ingest", model__isnull=False, user__isnull=True)
                           | models.Q(kind="user", user__isnull=False, model__isnull=True)
                           | models.Q(kind="metrics", user__isnull=True, model__isnull=True)),
            )
        ]

    def __str__(self) -> str:
        owner = self.model.slug if self.model_id else self.user.get_username() if self.user_id else "metrics"
        return f"{self.get_kind_display()} token {self.prefix}… for {owner}"

    @classmethod
    def expiry(cls, *, kind: str, user: Any = None, days: int | None = None) -> datetime | None:
        """When a new token stops working: in `days` (0: never); without `days`, a personal token after
        API_TOKEN_MAX_AGE_DAYS and any other never (a service that logs queries holds it). A single sign-on
        account's token never outlives SSO_TOKEN_MAX_AGE_DAYS, whatever was asked."""
        if days is not None and days < 0:
            raise ValueError(f"a token cannot expire {-days} days ago")
        if days is None:
            days = settings.API_TOKEN_MAX_AGE_DAYS if kind == cls.USER else 0
        if is_sso_account(user):
            days = min(days or settings.SSO_TOKEN_MAX_AGE_DAYS, settings.SSO_TOKEN_MAX_AGE_DAYS)
        return timezone.now() + timedelta(days=days) if days else None

    @classmethod
    def issue(cls, *, kind: str, model: RegisteredModel | None = None, user: Any = None,
              expires_days: int | None = None) -> tuple[ApiToken, str]:
        """Create a token (expiring as `expiry` says); the clear value is returned once and never stored."""
        from monitor.trail.models import TrailEntry
        from monitor.trail.recording import recorded_by_caller

        clear = f"mim_{kind}_{secrets.token_urlsafe(32)}"
        expires_at = cls.expiry(kind=kind, user=user, days=expires_days)
        with recorded_by_caller():  # the token.issued entry below, not the save signal's token.created
            token = cls.objects.create(kind=kind, model=model, user=user, token_hash=hash_token(clear),
                                       prefix=clear[:12], expires_at=expires_at)
        # The prefix identifies the token in the log; the secret part never leaves this function but once.
        TrailEntry.record(action="token.issued", obj=token, after={
            "kind": kind, "prefix": token.prefix, "model": model.slug if model else None,
            "user": user.get_username() if user else None,
            "expires_at": expires_at.isoformat() if expires_at else None})
        return token, clear

    def revoke(self, *, actor: Any, ip: str | None) -> bool:
        """Revoke the token now, as one `token.revoked` trail entry naming its prefix (never the secret or its
        hash); False, and nothing written, if it already was revoked. A conditional update: of two revocations at
        once exactly one is recorded (and no save signal records it a second time)."""
        from monitor.trail.models import TrailEntry

        now = timezone.now()
        with transaction.atomic():
            if not ApiToken.objects.filter(id=self.pk, revoked_at__isnull=True).update(revoked_at=now):
                return False
            self.revoked_at = now
            TrailEntry.record(action="token.revoked", actor=actor, ip=ip, obj=self, before={"revoked_at": None},
                              after={"kind": self.kind, "prefix": self.prefix,
                                     "model": self.model.slug if self.model_id else None,
                                     "user": self.user.get_username() if self.user_id else None,
                                     "revoked_at": now.isoformat()})
        return True

    def summary(self) -> dict[str, Any]:
        """The token as the API lists it: never its secret or hash."""
        return {"id": self.pk, "kind": self.kind, "prefix": self.prefix,
                "user": self.user.get_username() if self.user_id else None,
                "model": self.model.slug if self.model_id else None, "created_at": self.created_at,
                "last_used_at": self.last_used_at, "expires_at": self.expires_at, "revoked_at": self.revoked_at}

    @classmethod
    def authenticate(cls, clear: str) -> ApiToken | None:
        token = cls.objects.active().select_related("model", "user").filter(token_hash=hash_token(clear)).first()
        if token is None or (token.user_id and not token.user.is_active):
            return None
        now = timezone.now()
        # Write last_used at most once a minute: a token is used for every ingestion batch.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            cls.objects.filter(id=token.id).update(last_used_at=now)
        return token

    @classmethod
    def from_authorization(cls, header: str) -> tuple[ApiToken | None, str]:
        """The token an `Authorization: Bearer <token>` header names, or None and a sentence saying why not (the
        header itself is never repeated: it holds the secret)."""
        scheme, _, clear = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not clear.strip():
            return None, "the Authorization header must be 'Bearer <token>'"
        token = cls.authenticate(clear.strip())
        return token, "" if token is not None else cls.refusal(clear.strip())

    @classmethod
    def refusal(cls, clear: str) -> str:
        """Why `clear` does not authenticate, in a sentence for the client (it names no other token)."""
        token = cls.objects.select_related("user").filter(token_hash=hash_token(clear)).first()
        if token is None:
            return "the API token is not valid (no such token); send it whole as Authorization: Bearer <token>"
        if token.revoked_at is not None:
            return f"the API token {token.prefix}… was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC; ask an admin for a new one"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return f"the API token {token.prefix}… expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; ask an admin for a new one"
        return f"the API token {token.prefix}… belongs to a deactivated user account"


class TokenUsage(models.Model):
    """Rows charged to a token per minute window, for its rate limit (monitor/ratelimit.py)."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="usage")
    window_start = models.DateTimeField()
    queries = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "window_start"], name="one_usage_row_per_window")]
        indexes = [models.Index(fields=["window_start"])]
