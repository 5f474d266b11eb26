"""Email and Slack transports. A transport raises NotifyError; `permanent` errors disable the channel
(healthchecks' pattern), temporary ones are retried with backoff. What goes out never carries training-member ids:
each message says how many and links back to the alert, where the roles that may see them do."""
from __future__ import annotations

import logging
import smtplib
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email
from django.template.loader import render_to_string
from slack_sdk.webhook import WebhookClient, WebhookResponse

from monitor.alerts.evidence_text import evidence_lines, truncate, without_member_ids
from monitor.models import Alert, Delivery, NotificationChannel
from monitor.platform import outbound

# Silenced: slack_sdk would write the webhook URL (a secret) into the log on retries and debug output.
_SLACK_SDK_LOGGER = logging.getLogger("monitor.alerts.transports.slack_sdk")
_SLACK_SDK_LOGGER.setLevel(logging.CRITICAL + 1)
_SLACK_SDK_LOGGER.propagate = False
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_HEADER = 150


class NotifyError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, disables_channel: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.disables_channel = permanent if disables_channel is None else disables_channel


@dataclass
class Message:
    subject: str
    text: str
    html: str
    slack_text: str
    slack_blocks: list[dict] = field(default_factory=list)
    # The same on every attempt at one outbox row: a receiver that deduplicates on it sees a resend once.
    idempotency_key: str = ""
    # The JSON event the HTTP integrations (webhook, PagerDuty, Teams) send or build on.
    event: dict = field(default_factory=dict)


def email_addresses(target: str) -> list[str]:
    """Split and validate a channel's addresses; raises ValueError naming the bad one."""
    addresses = [a.strip() for a in target.replace(";", ",").split(",") if a.strip()]
    if not addresses:
        raise ValueError("at least one email address is needed")
    for address in addresses:
        try:
            validate_email(address)
        except Exception as exc:
            raise ValueError(f"{address!r} is not a valid email address") from exc
    return addresses


def idempotency_key(delivery: Delivery) -> str:
    """One per outbox row, stable across its retries; the creation time keeps it unique after a database reset."""
    return f"{delivery.pk}.{delivery.created_at:%Y%m%d%H%M%S%f}"


def render(delivery: Delivery) -> Message:
    """The message for one outbox row, rendered from templates (email) and Block Kit (Slack)."""
    alert = delivery.alert
    context = {"delivery": delivery, "alert": alert, "site_url": settings.SITE_URL, "payload": delivery.payload,
               "evidence_lines": evidence_lines(alert.evidence, kind=alert.kind) if alert else []}
    if alert is not None:
        context["alert_url"] = alert_url(alert)
        template = "alert"
    else:
        template = {"digest": "digest", "summary": "summary", "test": "test"}[delivery.event]
    subject = " ".join(render_to_string(f"emails/{template}-subject.txt", context).split())
    text = render_to_string(f"emails/{template}-body.txt", context)
    html = render_to_string(f"emails/{template}-body.html", context)
    return Message(subject=truncate(subject, 200), text=text, html=html, slack_text=truncate(subject, 3000),
                   slack_blocks=slack_blocks(delivery, subject=subject, text=text, context=context),
                   idempotency_key=idempotency_key(delivery), event=event_payload(delivery))


def alert_url(alert: Alert) -> str:
    return f"{settings.SITE_URL}/alerts/{alert.pk}/"


def event_payload(delivery: Delivery) -> dict[str, Any]:
    """The JSON event every HTTP integration starts from: what happened, to which alert, and a link. Member ids in
    the evidence go out as their counts (`n_member_ids`, ...)."""
    alert = delivery.alert
    now = delivery.created_at.astimezone(UTC).isoformat()  # when it happened: the same body on every retry
    if alert is None:
        return {"type": f"channel.{delivery.event}", "timestamp": now,
                "data": {"channel": delivery.channel.name, "event": delivery.event, "payload": delivery.payload,
                         "url": f"{settings.SITE_URL}/alerts/"}}
    return {"type": f"alert.{delivery.event}", "timestamp": now, "data": {
        "id": alert.pk, "fingerprint": alert.fingerprint, "model": alert.model.slug, "client_id": alert.client_id or None,
        "source": alert.source, "kind": alert.kind, "title": alert.title, "severity": alert.severity,
        "status": alert.status, "first_seen": alert.first_seen, "last_seen": alert.last_seen,
        "occurrences": alert.occurrences, "evidence": without_member_ids(alert.evidence),
        "summary": evidence_lines(alert.evidence, kind=alert.kind), "url": alert_url(alert)}}


def slack_blocks(delivery: Delivery, *, subject: str, text: str, context: dict) -> list[dict]:
    alert = delivery.alert
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": truncate(subject, SLACK_MAX_HEADER)}}]
    if alert is not None:
        fields = [f"*Severity*\n{alert.severity}", f"*Model*\n{alert.model.slug}", f"*Status*\n{alert.status}",
                  f"*Event*\n{delivery.event}"]
        if alert.client_id:
            fields.append(f"*Client*\n{alert.client_id}")
        fields.append(f"*Occurrences*\n{alert.occurrences}")
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": truncate(f, 2000)} for f in fields[:10]]})
        if context["evidence_lines"]:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
                "*Evidence*\n" + "\n".join(context["evidence_lines"]), SLACK_MAX_SECTION)}})
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open alert"},
                                                        "url": context["alert_url"]}]})
    else:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SLACK_MAX_SECTION)}})
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open alerts"},
                                                        "url": f"{settings.SITE_URL}/alerts/"}]})
    return blocks[:SLACK_MAX_BLOCKS]


class Transport(Protocol):
    def send(self, channel: NotificationChannel, message: Message) -> None: ...


class EmailTransport:
    def send(self, channel: NotificationChannel, message: Message) -> None:
        try:
            recipients = email_addresses(channel.target)
        except ValueError as exc:
            raise NotifyError(str(exc), permanent=True) from exc
        # A stable Message-ID: mail systems that deduplicate on it (Gmail does) show a resent message once.
        headers = {"Message-ID": f"<monitor.{message.idempotency_key}@{DNS_NAME}>"} if message.idempotency_key else {}
        email = EmailMultiAlternatives(message.subject, message.text, settings.DEFAULT_FROM_EMAIL, recipients,
                                       connection=get_connection(timeout=settings.NOTIFY_TIMEOUT), headers=headers)
        email.attach_alternative(message.html, "text/html")
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(f"{a} ({code})" for a, (code, _) in exc.recipients.items())
            raise NotifyError(f"the mail server refused {refused}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise NotifyError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"the mail server is unreachable: {type(exc).__name__}: {exc}") from exc


class GuardedWebhookClient(WebhookClient):
    """slack_sdk's client, posting through monitor/platform/outbound.py: only where the guard allows, never
    following a redirect, within one deadline, and without reading Slack's answer (its status says enough).

    No retry handlers (the outbox retries) and a logger of its own: slack_sdk logs the full webhook URL,
    which is a secret, when it retries or debugs a response.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        super().__init__(url, timeout=timeout, retry_handlers=[], logger=_SLACK_SDK_LOGGER)  # type: ignore[arg-type]

    def _perform_http_request_internal(self, url: str, req: urllib.request.Request) -> WebhookResponse:
        status = outbound.post(url, body=req.data, headers=req.header_items(), timeout=self.timeout)  # type: ignore[arg-type]
        return WebhookResponse(url=url, status_code=status, body="", headers={})


def answered(service: str, status: int) -> str:
    """A receiver's answer as we report it: the status and its standard phrase, never the receiver's own words
    (a webhook pointed at an internal service would otherwise show that service's pages)."""
    return f"{service} answered {status} {outbound.status_phrase(status)}"


class SlackTransport:
    def send(self, channel: NotificationChannel, message: Message) -> None:
        client = GuardedWebhookClient(channel.target, timeout=max(1.0, settings.NOTIFY_TIMEOUT))
        try:
            headers = {"Idempotency-Key": message.idempotency_key} if message.idempotency_key else None
            response = client.send(text=message.slack_text, blocks=message.slack_blocks, headers=headers)
        except outbound.OutboundBlocked as exc:
            raise NotifyError(f"the webhook address is not allowed: {exc}", permanent=True) from exc
        except (TimeoutError, OSError) as exc:
            raise NotifyError(f"Slack is unreachable: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # slack_sdk wraps urllib errors in several types
            raise NotifyError(f"Slack request failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 200:
            return
        if 300 <= status < 400:
            raise NotifyError(f"Slack answered a redirect ({status}); redirects are not followed", permanent=True)
        if status in (403, 404, 410):
            # The webhook was revoked or its channel archived: retrying cannot help.
            raise NotifyError(f"{answered('Slack', status)}: the webhook no longer exists", permanent=True)
        if status == 400:
            raise NotifyError(f"Slack rejected the message: {status} {outbound.status_phrase(status)}",
                              permanent=True, disables_channel=False)
        raise NotifyError(answered("Slack", status))


TRANSPORTS: dict[str, Transport] = {NotificationChannel.EMAIL: EmailTransport(), NotificationChannel.SLACK: SlackTransport()}
