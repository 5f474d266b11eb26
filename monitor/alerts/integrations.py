"""The tools security teams already run: a signed webhook (Standard Webhooks, signed by the `standardwebhooks`
package), PagerDuty (Events API v2: trigger, acknowledge and resolve under one dedup key) and Microsoft Teams
(an Adaptive Card to a workflow webhook). Same outbox, backoff, rate limits and trail as email and Slack: each
transport raises NotifyError, `permanent` for what a retry cannot fix."""
from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks.webhooks import Webhook

from monitor.alerts.evidence_text import truncate
from monitor.alerts.transports import Message, NotifyError, answered
from monitor.models import NotificationChannel
from monitor.platform import outbound

PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
PAGERDUTY_ACTION = {"opened": "trigger", "escalated": "trigger", "reminder": "trigger", "acknowledged": "acknowledge",
                    "resolved": "resolve"}
ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{20,64}$")


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_webhook_secret(secret: str) -> str:
    """The secret as given by an admin, or ValueError saying what a valid one looks like."""
    secret = secret.strip()
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
        raise ValueError("a Standard Webhooks secret: whsec_ followed by base64 of 24 to 64 random bytes")
    return secret


def check_routing_key(key: str) -> str:
    key = key.strip()
    if not ROUTING_KEY.match(key):
        raise ValueError("a PagerDuty Events API v2 routing key (the integration key: 20-64 letters and digits)")
    return key


# --- HTTP ---------------------------------------------------------------------------------------------------

def _post(url: str, body: bytes, headers: dict[str, str], *, service: str) -> int:
    """POST through the outbound guard within NOTIFY_TIMEOUT in all, never following a redirect; the status."""
    if not url.startswith(("https://", "http://")):
        raise NotifyError(f"the {service} address must be an http(s) URL", permanent=True)
    try:
        return outbound.post(url, body=body, timeout=max(1.0, settings.NOTIFY_TIMEOUT),
                             headers={"Content-Type": "application/json", "User-Agent": "mi-monitor", **headers})
    except outbound.OutboundBlocked as exc:
        raise NotifyError(f"the {service} address is not allowed: {exc}", permanent=True) from exc
    except (TimeoutError, OSError) as exc:
        raise NotifyError(f"{service} is unreachable: {type(exc).__name__}: {exc}") from exc


def _judge(status: int, *, service: str) -> None:
    """2xx is delivered; a redirect, or a 4xx other than 408/429, cannot be fixed by retrying; the rest is retried.
    What the receiver said is not read: only its status is reported (transports.answered)."""
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise NotifyError(f"{service} answered a redirect ({status}); redirects are not followed", permanent=True)
    if status in (404, 410):
        raise NotifyError(f"{answered(service, status)}: the endpoint no longer exists", permanent=True)
    if 400 <= status < 500 and status not in (408, 429):
        raise NotifyError(f"{service} refused the message: {status} {outbound.status_phrase(status)}", permanent=True,
                          disables_channel=False)
    raise NotifyError(answered(service, status))


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False).encode()


# --- transports ---------------------------------------------------------------------------------------------

class WebhookTransport:
    """POST the event signed per Standard Webhooks: webhook-id (the same on every retry of one event),
    webhook-timestamp, webhook-signature = v1,base64(HMAC-SHA256(id.timestamp.body)) with the channel's secret."""

    def send(self, channel: NotificationChannel, message: Message) -> None:
        secret = channel.signing_secret()
        if not secret:
            raise NotifyError("the webhook channel has no signing secret", permanent=True)
        body = _encode(message.event)
        msg_id = f"msg_{message.idempotency_key}"
        now = datetime.now(UTC)
        signature = Webhook(secret).sign(msg_id, now, body.decode())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
        _judge(_post(channel.target, body, headers, service="the webhook"), service="the webhook")


class PagerDutyTransport:
    """Events API v2: an alert opened or raised triggers, acknowledged acknowledges, resolved resolves — all under
    dedup_key = the alert's fingerprint, so PagerDuty keeps one incident per alert. Summaries and digests are not
    sent (PagerDuty groups by itself); the test button triggers a test event and resolves it at once."""

    def send(self, channel: NotificationChannel, message: Message) -> None:
        event = message.event
        data = event["data"]
        url = settings.PAGERDUTY_EVENTS_URL
        if event["type"] == "channel.test":
            key = f"mi-monitor-test-{channel.pk}"
            self._enqueue(url, {"routing_key": channel.target, "event_action": "trigger", "dedup_key": key,
                                "payload": {"summary": "MI Monitor test event: this channel reaches PagerDuty",
                                            "source": "mi-monitor", "severity": "info"}})
            self._enqueue(url, {"routing_key": channel.target, "event_action": "resolve", "dedup_key": key})
            return
        action = PAGERDUTY_ACTION.get(event["type"].removeprefix("alert."))
        if action is None:
            return  # summary / digest: nothing PagerDuty needs
        body: dict[str, Any] = {"routing_key": channel.target, "event_action": action,
                                "dedup_key": data["fingerprint"][:255]}
        if action == "trigger":
            body.update({
                "payload": {"summary": truncate(f"[{data['severity']}] {data['model']}: {data['title']}", 1024),
                            "source": f"mi-monitor/{data['model']}", "severity": PAGERDUTY_SEVERITY[data["severity"]],
                            "component": data["model"], "group": data["source"], "class": data["kind"],
                            "custom_details": {"client_id": data["client_id"], "occurrences": data["occurrences"],
                                               "evidence": data["summary"], "alert_id": data["id"]}},
                "links": [{"href": data["url"], "text": "Open the alert in MI Monitor"}],
                "client": "MI Monitor", "client_url": data["url"],
            })
        self._enqueue(url, body)

    @staticmethod
    def _enqueue(url: str, body: dict) -> None:
        status = _post(url, _encode(body), {}, service="PagerDuty")
        if status == 400:
            raise NotifyError("PagerDuty refused the event: 400 Bad Request", permanent=True, disables_channel=False)
        _judge(status, service="PagerDuty")


class TeamsTransport:
    """An Adaptive Card (title, severity, model, client, evidence lines, a link) posted to a Teams workflow or
    incoming webhook."""

    def send(self, channel: NotificationChannel, message: Message) -> None:
        _judge(_post(channel.target, _encode(adaptive_card(message)), {}, service="Teams"), service="Teams")


def adaptive_card(message: Message) -> dict[str, Any]:
    data = message.event["data"]
    facts = []
    if "severity" in data:
        facts = [{"title": "Severity", "value": data["severity"]}, {"title": "Model", "value": data["model"]},
                 {"title": "Status", "value": data["status"]}, {"title": "Event", "value": message.event["type"]}]
        if data.get("client_id"):
            facts.append({"title": "Client", "value": data["client_id"]})
        facts.append({"title": "Occurrences", "value": str(data["occurrences"])})
    colour = {"critical": "attention", "warning": "warning"}.get(data.get("severity", ""), "accent")
    body: list[dict[str, Any]] = [{"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
                                   "color": colour, "text": truncate(message.subject, 200)}]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    lines = data.get("summary") or ([] if facts else [truncate(message.text, 2000)])
    body.extend({"type": "TextBlock", "wrap": True, "text": truncate(line, 1000)} for line in lines[:20])
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "body": body, "actions": [{"type": "Action.OpenUrl", "title": "Open in MI Monitor", "url": data["url"]}]}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


TRANSPORTS = {NotificationChannel.WEBHOOK: WebhookTransport(), NotificationChannel.PAGERDUTY: PagerDutyTransport(),
              NotificationChannel.TEAMS: TeamsTransport()}
