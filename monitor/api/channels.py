"""Notification channels: where alerts are sent (configure roles only)."""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from monitor.access import roles
from monitor.alerts.channels import ChannelError, create_channel, delete_channel, queue_test
from monitor.api.auth import needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import ChannelCreatedOut, ChannelIn, ChannelOut, ChannelTestOut
from monitor.models import NotificationChannel
from monitor.trail.hooks import client_ip

router = Router(tags=["channels"])


def _channel(channel_id: int) -> NotificationChannel:
    channel = NotificationChannel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise ApiError(404, f"no channel with id {channel_id}")
    return channel


@router.get("/channels", auth=needs(roles.CONFIGURE), summary="Notification channels", response={200: list[ChannelOut], 403: dict})
def list_channels(request: HttpRequest) -> list[dict]:
    return [c.summary() for c in NotificationChannel.objects.all()]


@router.post("/channels", auth=needs(roles.CONFIGURE), summary="Create a notification channel",
             response={201: ChannelCreatedOut, 400: dict, 403: dict})
def add_channel(request: HttpRequest, body: ChannelIn) -> Status:
    """A webhook channel answers with its signing `secret` this once (generated unless one was given)."""
    try:
        channel = create_channel(**body.model_dump(), user=request_user(request), ip=client_ip(request))
    except ChannelError as exc:
        raise ApiError(400, exc.message, [problem(exc.field, exc.message)]) from exc
    return Status(201, {**channel.summary(), "secret": channel.new_secret})


@router.delete("/channels/{channel_id}", auth=needs(roles.CONFIGURE), summary="Delete a notification channel",
               response={204: None, 403: dict, 404: dict})
def remove_channel(request: HttpRequest, channel_id: int) -> Status:
    delete_channel(_channel(channel_id), user=request_user(request), ip=client_ip(request))
    return Status(204, None)


@router.post("/channels/{channel_id}/test", auth=needs(roles.CONFIGURE), summary="Queue a test message",
             response={202: ChannelTestOut, 400: dict, 403: dict, 404: dict})
def test_channel(request: HttpRequest, channel_id: int) -> Status:
    """The outbox worker sends it within seconds; a failure shows as the channel's `last_error` (or, for good,
    `disabled_reason`)."""
    try:
        delivery = queue_test(_channel(channel_id))
    except ChannelError as exc:
        raise ApiError(400, exc.message, [problem(exc.field, exc.message)]) from exc
    return Status(202, {"status": "queued", "delivery": delivery.pk})
