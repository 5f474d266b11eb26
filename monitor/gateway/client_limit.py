"""The per-client throttle of one model at the predict gateway: at most `client_queries_per_minute` rows a minute
and `client_queries_per_day` rows a UTC day from any one client (0: no limit). Sized from what an undetected attacker
can test per account-day (`audits.undetected`); set through `PATCH /api/v1/models/{slug}/client-rate-limit` or the
model page, each change in the security trail.

A model whose queries reach the product through the ingestion API is served by its owner's own gateway: the limits
are the figure that gateway should apply; the product cannot refuse queries it only logs."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from monitor.access.ratelimit import add_to_window
from monitor.gateway.restrictions import Restricted
from monitor.models import ClientUsage, RegisteredModel
from monitor.models.registry import MAX_CLIENT_QUERIES
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller

DAY = timedelta(days=1)


class RateLimitError(ValueError):
    """Bad input to the per-client throttle, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _windows(now: datetime) -> list[tuple[str, datetime, int]]:
    """(span, window start, seconds until the next window) for the minute and the UTC day `now` falls in."""
    minute = now.replace(second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(ClientUsage.MINUTE, minute, max(1, math.ceil((minute + timedelta(minutes=1) - now).total_seconds()))),
            (ClientUsage.DAY, day, max(1, math.ceil((day + DAY - now).total_seconds())))]


def charge_client(model: RegisteredModel, client_id: str, rows: int, *, now: datetime | None = None) -> None:
    """Count `rows` against the client's minute and day, or raise Restricted(429) and count nothing."""
    limits = {ClientUsage.MINUTE: model.client_queries_per_minute, ClientUsage.DAY: model.client_queries_per_day}
    if not any(limits.values()):
        return
    rows = max(1, rows)
    now = now or timezone.now()
    with transaction.atomic():
        for span, window_start, retry_after in _windows(now):
            limit = limits[span]
            owner = {"model_id": model.pk, "client_id": client_id, "span": span}
            if limit and (rows > limit or not add_to_window(ClientUsage, owner, window_start, rows, limit)):
                transaction.set_rollback(True)  # the minute already counted is not counted either
                raise Restricted(429, f"client {client_id!r} may send {model.slug} at most {limit:,} queries a {span} "
                                      f"(the model's per-client throttle); retry after {retry_after} s", retry_after)


def current(model: RegisteredModel) -> dict[str, int | None]:
    """The throttle in force: per_minute and per_day, None where there is none."""
    return {"per_minute": model.client_queries_per_minute or None, "per_day": model.client_queries_per_day or None}


def _limit(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CLIENT_QUERIES:
        raise RateLimitError(field, f"must be a whole number from 0 (no limit) to {MAX_CLIENT_QUERIES:,}, or null")
    return value


def checked_target(target: Any) -> int:
    """A target of records per account-day as given, or RateLimitError naming the field."""
    if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= MAX_CLIENT_QUERIES:
        raise RateLimitError("target_records_per_account_day", f"must be a whole number from 1 to {MAX_CLIENT_QUERIES:,}")
    return target


def set_limits(model: RegisteredModel, *, per_minute: Any, per_day: Any, target: Any = None, actor: Any = None,
               ip: str | None = None, basis: dict[str, Any] | None = None) -> RegisteredModel:
    """Set the per-client throttle (None or 0: no limit) and, when given, the target, in the security trail as
    `model.client_rate_limit` with before and after (and the recommendation's basis when it was applied)."""
    after: dict[str, Any] = {"client_queries_per_minute": _limit(per_minute, "per_minute"),
                             "client_queries_per_day": _limit(per_day, "per_day")}
    if target is not None:
        after["undetected_records_target"] = checked_target(target)
    with transaction.atomic(), recorded_by_caller():  # one entry, this one, naming the caller
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        before = {name: getattr(model, name) for name in after}
        for name, value in after.items():
            setattr(model, name, value)
        model.save(update_fields=[*after, "updated_at"])
        TrailEntry.record(action="model.client_rate_limit", actor=actor, ip=ip, obj=model, before=before,
                          after={**after, **({"basis": basis} if basis else {})})
    return model

