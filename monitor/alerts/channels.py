"""Creating and checking notification channels (shared by the API, the page and the admin)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from monitor.alerts import integrations
from monitor.alerts.transports import email_addresses
from monitor.models import SEVERITIES, Delivery, DeliveryEvent, NotificationChannel, RegisteredModel
from monitor.platform.broker import publish_on_commit
from monitor.platform.outbound import OutboundBlocked, check_url
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller

URL_KINDS = {NotificationChannel.SLACK: "the incoming-webhook URL, https://hooks.slack.com/services/…",
             NotificationChannel.WEBHOOK: "where the signed JSON events are POSTed",
             NotificationChannel.TEAMS: "the Teams workflow or incoming-webhook URL"}


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
    if kind == NotificationChannel.PAGERDUTY:
        try:
            return integrations.check_routing_key(target)
        except ValueError as exc:
            raise ChannelError("target", str(exc)) from exc
    if kind in URL_KINDS:
        if not target.startswith(("https://", "http://")) or " " in target or len(target) > 500:
            raise ChannelError("target", f"a {kind} channel needs its URL ({URL_KINDS[kind]})")
        try:
            check_url(target)
        except (ValueError, OutboundBlocked) as exc:
            raise ChannelError("target", str(exc)) from exc
        return target
    raise ChannelError("kind", f"unknown channel kind {kind!r}: use {', '.join(k for k, _ in NotificationChannel.KINDS)}")


def create_channel(*, name: str, kind: str, target: str, min_severity: str = "warning", models: list[str] | None = None,
                   rate_limit_per_hour: int = 30, digest: bool = True, secret: str | None = None, user: Any = None,
                   ip: str | None = None) -> NotificationChannel:
    """A new channel. A webhook channel signs with `secret` (whsec_…), or with one generated here; either way the
    channel comes back with `new_secret` set so that the caller can show it once (it is stored encrypted)."""
    if not name.strip() or len(name) > 100:
        raise ChannelError("name", "a name of 1-100 characters is required")
    target = check_target(kind, target)
    if secret and kind != NotificationChannel.WEBHOOK:
        raise ChannelError("secret", "only webhook channels take a signing secret")
    if kind == NotificationChannel.WEBHOOK:
        try:
            secret = integrations.check_webhook_secret(secret) if secret else integrations.new_webhook_secret()
        except ValueError as exc:
            raise ChannelError("secret", str(exc)) from exc
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
    with transaction.atomic(), recorded_by_caller():  # channel.created below is the one entry
        channel = NotificationChannel(
            name=name.strip(), kind=kind, target=target, min_severity=min_severity, all_models=not selected,
            rate_limit_per_hour=rate_limit_per_hour, digest=digest, created_by=user if getattr(user, "pk", None) else None)
        channel.set_signing_secret(secret or "")
        channel.save()
        channel.selected_models.set(selected)
        TrailEntry.record(action="channel.created", actor=user, ip=ip, obj=channel,
                             after={"name": channel.name, "kind": kind, "min_severity": min_severity,
                                    "models": [m.slug for m in selected] or "all"})
    channel.new_secret = secret or None  # type: ignore[attr-defined]  # shown once, never stored in the clear
    return channel


def queue_test(channel: NotificationChannel) -> Delivery:
    """Queue a test message: the outbox worker sends it like any other (guarded, within NOTIFY_TIMEOUT, retried on a
    temporary failure), so no web request waits on a receiver. Its outcome is the returned delivery's status and,
    when it fails, the channel's last error. The target is checked again first: the outbound settings may have
    changed since it was stored. ChannelError when the channel cannot be tested."""
    if not channel.enabled:
        raise ChannelError("enabled", f"the channel is disabled ({channel.disabled_reason or 'by an admin'}): "
                                      "enable it, then send the test")
    check_target(channel.kind, channel.target)
    with transaction.atomic():
        delivery = Delivery.objects.create(channel=channel, alert=None, event=DeliveryEvent.TEST,
                                           key=timezone.now().isoformat())
        publish_on_commit("monitor.tasks.deliver_notifications")  # a wake-up call: beat's run finds the row too
    return delivery


def enable_channel(channel: NotificationChannel, *, user: Any = None, ip: str | None = None) -> None:
    """Turn a channel back on (a permanent failure or an admin turned it off)."""
    with transaction.atomic():
        NotificationChannel.objects.filter(pk=channel.pk).update(enabled=True, disabled_reason="")
        TrailEntry.record(action="channel.enabled", actor=user, ip=ip, obj=channel)
    channel.enabled, channel.disabled_reason = True, ""


def delete_channel(channel: NotificationChannel, *, user: Any = None, ip: str | None = None) -> None:
    with transaction.atomic(), recorded_by_caller():
        TrailEntry.record(action="channel.deleted", actor=user, ip=ip, obj=channel,
                             before={"name": channel.name, "kind": channel.kind})
        channel.delete()
