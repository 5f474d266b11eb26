"""Acting on one client at the predict gateway: reduce its outputs (label_only, round:K), throttle it, or block it,
until a time or until lifted. Every restriction, lift and expiry goes to the security trail (so into evidence
bundles) and onto the timeline of the client's open alerts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitor.access.ratelimit import add_to_window, window_of
from monitor.alerts import timeline
from monitor.ingestion.validate import identifier_problem
from monitor.models import Alert, AlertEventKind, ClientRestriction, RegisteredModel, RestrictionUsage
from monitor.platform.moments import in_utc
from monitor.platform.output_policy import OutputPolicy
from monitor.platform.severity import Severity
from monitor.trail.models import TrailEntry

BLOCK, THROTTLE, LABEL_ONLY = "block", "throttle", "label_only"
ACTIONS_HELP = 'one of "label_only", "round:K" (K = 0..15 decimals), "throttle", "block"'
MAX_REASON = 2000


class RestrictionError(ValueError):
    """Bad input to a restriction, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass
class Restricted(Exception):
    """The gateway refuses this client's request: 403 (blocked) or 429 (throttled, with Retry-After)."""

    status: int
    message: str
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message


def parse_action(action: Any) -> str:
    if not isinstance(action, str):
        raise RestrictionError("action", f"must be {ACTIONS_HELP}")
    if action in (BLOCK, THROTTLE, LABEL_ONLY):
        return action
    if action.startswith("round:"):
        try:
            policy = OutputPolicy.parse(action)
        except ValueError as exc:
            raise RestrictionError("action", f"{exc}; {ACTIONS_HELP}") from None
        return str(policy)
    raise RestrictionError("action", f"unknown action {action[:40]!r}; {ACTIONS_HELP}")


def active(model: RegisteredModel, client_id: str, *, now: datetime | None = None) -> ClientRestriction | None:
    return ClientRestriction.objects.active(now).filter(model=model, client_id=client_id).first()


def restrict(model: RegisteredModel, client_id: str, *, action: Any, until: datetime | None, reason: Any,
             user: Any = None, ip: str | None = None, now: datetime | None = None) -> ClientRestriction:
    """Put `action` on the client (replacing its current restriction, if any)."""
    now = now or timezone.now()
    action = parse_action(action)
    problem = identifier_problem(client_id, "client_id", required=True)  # as ingestion takes client ids
    if problem:
        raise RestrictionError("client_id", problem)
    if until is not None:
        try:
            until = in_utc(until)
        except ValueError as exc:
            raise RestrictionError("until", str(exc)) from None
        if until <= now:
            raise RestrictionError("until", "must be in the future (or null: until lifted)")
    if not isinstance(reason, str) or not reason.strip():
        raise RestrictionError("reason", "say why (it goes to the security trail and the client's alerts)")
    if len(reason) > MAX_REASON:
        raise RestrictionError("reason", f"at most {MAX_REASON} characters")
    with transaction.atomic():
        replaced = ClientRestriction.objects.select_for_update().filter(model=model, client_id=client_id,
                                                                        lifted_at__isnull=True).first()
        if replaced is not None:
            _close(replaced, at=now, how="replaced", user=user, ip=ip)
        try:
            with transaction.atomic():
                restriction = ClientRestriction.objects.create(
                    model=model, client_id=client_id, action=action, until=until, reason=reason.strip(),
                    created_by=user if getattr(user, "pk", None) else None, created_at=now)
        except IntegrityError:
            raise RestrictionError("client_id", "another restriction of this client was saved at the same time; "
                                                "read the restrictions and retry") from None
        TrailEntry.record(action="restriction.created", actor=user, ip=ip, obj=restriction, after=describe(restriction))
        _on_alerts(restriction, AlertEventKind.RESTRICTED, user=user, note=f"{action}: {restriction.reason}")
    return restriction


def lift(model: RegisteredModel, client_id: str, *, user: Any = None, ip: str | None = None,
         now: datetime | None = None) -> ClientRestriction | None:
    """Lift the client's current restriction; None when it has none."""
    now = now or timezone.now()
    if "\x00" in client_id:  # no restriction can name one, and PostgreSQL would refuse the query rather than find none
        return None
    with transaction.atomic():
        current = (ClientRestriction.objects.active(now).select_for_update()
                   .filter(model=model, client_id=client_id).first())
        if current is None:
            return None
        _close(current, at=now, how="lifted", user=user, ip=ip)
    return current


def auto_restrict(model: RegisteredModel, alert: Alert, *, now: datetime | None = None) -> ClientRestriction | None:
    """The model's automatic restriction for the client of a detector alert at or above its severity, and for every
    account linked into the incident, unless already restricted (off unless the model sets `auto_restrict_action`).
    Returns the first restriction made (None if none)."""
    if not model.auto_restrict_action or not alert.client_id:
        return None
    if Severity(alert.severity).rank < Severity(model.auto_restrict_severity).rank:
        return None
    now = now or timezone.now()
    accounts = [alert.client_id, *sorted(set(alert.accounts.values_list("client_id", flat=True)) - {alert.client_id})]
    made = None
    for client_id in accounts:
        if active(model, client_id, now=now) is not None:
            continue
        restriction = restrict(model, client_id, action=model.auto_restrict_action,
                               until=now + timedelta(hours=model.auto_restrict_hours), now=now,
                               reason=f"automatic: {alert.severity} {alert.kind} alert #{alert.pk} ({alert.title})",
                               user=None)
        made = made or restriction
    return made


def expire_due(*, now: datetime | None = None) -> int:
    """Record the restrictions whose `until` has passed as lifted (they stopped applying at `until` already)."""
    now = now or timezone.now()
    expired = 0
    for restriction in ClientRestriction.objects.filter(lifted_at__isnull=True, until__lte=now):
        with transaction.atomic():
            if ClientRestriction.objects.filter(pk=restriction.pk, lifted_at__isnull=True).update(
                    lifted_at=restriction.until, lift_reason="expired"):
                restriction.refresh_from_db()
                TrailEntry.record(action="restriction.expired", actor_name="gateway", obj=restriction,
                                  after=describe(restriction))
                _on_alerts(restriction, AlertEventKind.UNRESTRICTED, user=None, note=f"{restriction.action} expired")
                expired += 1
    return expired


def _close(restriction: ClientRestriction, *, at: datetime, how: str, user: Any, ip: str | None) -> None:
    restriction.lifted_at, restriction.lift_reason = at, how
    restriction.lifted_by = user if getattr(user, "pk", None) else None
    restriction.save(update_fields=["lifted_at", "lift_reason", "lifted_by"])
    TrailEntry.record(action=f"restriction.{how}", actor=user, ip=ip, obj=restriction, after=describe(restriction))
    _on_alerts(restriction, AlertEventKind.UNRESTRICTED, user=user, note=f"{restriction.action} {how}")


def _on_alerts(restriction: ClientRestriction, kind: AlertEventKind, *, user: Any, note: str) -> None:
    """On the timeline of every unresolved alert about this client (written by monitor.alerts, their one writer)."""
    timeline.record_on_client_alerts(model_id=restriction.model_id, client_id=restriction.client_id, kind=kind,
                                     actor=user, note=note,
                                     data={"restriction": restriction.pk, "action": restriction.action})


def describe(restriction: ClientRestriction) -> dict[str, Any]:
    """The JSON shape of a restriction (API, trail)."""
    return {
        "id": restriction.pk, "model": restriction.model.slug, "client_id": restriction.client_id,
        "action": restriction.action, "until": restriction.until.isoformat() if restriction.until else None,
        "reason": restriction.reason, "created_at": restriction.created_at.isoformat(),
        "created_by": restriction.created_by.get_username() if restriction.created_by else None,
        "lifted_at": restriction.lifted_at.isoformat() if restriction.lifted_at else None,
        "lift_reason": restriction.lift_reason or None,
    }


# ---- at the gateway ---------------------------------------------------------------------------------


def gateway_policy(model: RegisteredModel, client_id: str, rows: int, *,
                   now: datetime | None = None) -> OutputPolicy | None:
    """The extra output policy this client's restriction imposes (None: none), or Restricted when the gateway
    must refuse the request. Other clients are untouched."""
    now = now or timezone.now()
    restriction = active(model, client_id, now=now)
    if restriction is None:
        return None
    until = f" until {restriction.until:%Y-%m-%d %H:%M} UTC" if restriction.until else " until it is lifted"
    if restriction.action == BLOCK:
        raise Restricted(403, f"client {client_id!r} is blocked on {model.slug}{until} (restriction "
                              f"{restriction.pk}: {restriction.reason})")
    if restriction.action == THROTTLE:
        _charge(restriction, rows, now=now, until=until)
        return None
    return OutputPolicy.parse("label" if restriction.action == LABEL_ONLY else restriction.action)


def _charge(restriction: ClientRestriction, rows: int, *, now: datetime, until: str) -> None:
    """The throttle: the per-token rate limit's window counter, per restriction."""
    limit = settings.RESTRICTED_QUERIES_PER_MINUTE
    window, retry_after = window_of(now)
    message = (f"client {restriction.client_id!r} is throttled on {restriction.model.slug}{until}: at most {limit} "
               f"queries a minute (restriction {restriction.pk}: {restriction.reason}); retry after {retry_after} s")
    if rows > limit or not add_to_window(RestrictionUsage, {"restriction_id": restriction.pk}, window, max(1, rows), limit):
        raise Restricted(429, message, retry_after)
