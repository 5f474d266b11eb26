"""Creating and checking notification channels (shared by the API, the page and the admin)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from monitor.alerts.transports import email_addresses
from monitor.models import SEVERITIES, NotificationChannel, RegisteredModel
from monitor.platform.outbound import OutboundBlocked, check_url
from monitor.trail.models import TrailEntry


@dataclass
class ChannelError(ValueError):
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def check_target(kind: str, target: str) -> str:
    target = target.strip()
    if kind == NotificationChannel.EMAIL:
        try:
            return ", ".join(email_addresses(target))
        except ValueError as exc:
            raise ChannelError("target", str(exc)) from exc
    if kind == NotificationChannel.SLACK:
        if not target.startswith(("https://", "http://")) or " " in target or len(target) > 500:
            raise ChannelError("target", "a Slack channel needs its incoming-webhook URL (https://hooks.slack.com/services/…)")
        try:
            check_url(target)
        except (ValueError, OutboundBlocked) as exc:
            raise ChannelError("target", str(exc)) from exc
        return target
    raise ChannelError("kind", f"unknown channel kind {kind!r}: use email or slack")


def create_channel(*, name: str, kind: str, target: str, min_severity: str = "warning", models: list[str] | None = None,
                   rate_limit_per_hour: int = 30, digest: bool = True, user: Any = None, ip: str | None = None) -> NotificationChannel:
    if not name.strip() or len(name) > 100:
        raise ChannelError("name", "a name of 1-100 characters is required")
    target = check_target(kind, target)
    if min_severity not in SEVERITIES:
        raise ChannelError("min_severity", f"must be one of {', '.join(SEVERITIES)}")
    if not 1 <= rate_limit_per_hour <= 10_000:
        raise ChannelError("rate_limit_per_hour", "must be between 1 and 10000")
    selected = []
    if models:
        found = {m.slug: m for m in RegisteredModel.objects.filter(slug__in=models)}
        missing = [slug for slug in models if slug not in found]
        if missing:
            raise ChannelError("models", f"unknown model(s): {', '.join(missing)}")
        selected = list(found.values())
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            name=name.strip(), kind=kind, target=target, min_severity=min_severity, all_models=not selected,
            rate_limit_per_hour=rate_limit_per_hour, digest=digest, created_by=user if getattr(user, "pk", None) else None)
        channel.selected_models.set(selected)
        TrailEntry.record(action="channel.created", actor=user, ip=ip, obj=channel,
                             after={"name": channel.name, "kind": kind, "min_severity": min_severity,
                                    "models": [m.slug for m in selected] or "all"})
    return channel


def delete_channel(channel: NotificationChannel, *, user: Any = None, ip: str | None = None) -> None:
    with transaction.atomic():
        TrailEntry.record(action="channel.deleted", actor=user, ip=ip, obj=channel,
                             before={"name": channel.name, "kind": channel.kind})
        channel.delete()
