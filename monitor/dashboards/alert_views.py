"""Alert and channel pages: list with filters and actions, one alert's timeline, channel management."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from monitor.access import roles
from monitor.alerts import lifecycle as alerting
from monitor.alerts.channels import ChannelError, create_channel, delete_channel, enable_channel, queue_test
from monitor.alerts.evidence_text import evidence_lines, member_id_count
from monitor.alerts.lifecycle import AlertActionError
from monitor.gateway import restrictions
from monitor.models import (
    CLIENT_ID_MAX_LENGTH,
    SEVERITIES,
    Alert,
    NotificationChannel,
    RegisteredModel,
)
from monitor.trail.hooks import client_ip

STATUS_FILTERS = ["unresolved", "open", "acknowledged", "muted", "resolved", "all"]
MUTE_CHOICES = {"1h": timedelta(hours=1), "8h": timedelta(hours=8), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@roles.role_required(*roles.READ)
def alert_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "unresolved")
    status = status if status in STATUS_FILTERS else "unresolved"
    model, severity, client = request.GET.get("model", ""), request.GET.get("severity", ""), request.GET.get("client", "").strip()
    severity = severity if severity in SEVERITIES else ""
    alerts = Alert.objects.select_related("model", "acknowledged_by").matching(
        status="" if status == "all" else status, model=model, severity=severity, client_contains=client)
    page = Paginator(alerts.order_by("-last_seen", "-id"), 50).get_page(request.GET.get("page"))
    return render(request, "monitor/alert_list.html", {
        "page": page, "status": status, "statuses": STATUS_FILTERS, "severity": severity, "severities": SEVERITIES,
        "model": model, "models": RegisteredModel.objects.values_list("slug", flat=True), "client": client,
        "mute_choices": list(MUTE_CHOICES),
    })


@roles.role_required(*roles.READ)
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("model", "acknowledged_by", "resolved_by"), pk=alert_id)
    timeline = [{"at": e.at, "what": e.kind, "who": e.actor_name, "note": e.note, "data": e.data} for e in alert.events.all()]
    deliveries = alert.deliveries.select_related("channel").order_by("created_at", "id")
    # Member ids in the evidence only for the roles that may look a record up, each view in the trail; others
    # read their counts.
    member_ids = roles.may_see_member_ids(request.user)
    if member_ids:
        roles.record_member_id_read(user=request.user, ip=client_ip(request), via="page:alert",
                                    shown=[(alert, member_id_count(alert.evidence))])
    return render(request, "monitor/alert_detail.html", {
        "alert": alert, "timeline": timeline, "deliveries": deliveries, "mute_choices": list(MUTE_CHOICES),
        "evidence_lines": evidence_lines(alert.evidence, kind=alert.kind, member_ids=member_ids),
        "restriction": restrictions.active(alert.model, alert.client_id) if alert.client_id else None,
        "restriction_client": alert.client_id, "model": alert.model, "restrict_next": request.path,
    })


RESTRICT_HOURS = {"1", "24", "168", ""}


@roles.role_required(*roles.OPERATE)
@require_POST
def client_restriction(request: HttpRequest, slug: str) -> HttpResponse:
    """Restrict a client at the gateway, or lift its restriction (the alert and client pages' buttons)."""
    model = get_object_or_404(RegisteredModel, slug=slug)
    client_id = request.POST.get("client_id", "")[:CLIENT_ID_MAX_LENGTH]
    hours = request.POST.get("hours", "24")
    try:
        if request.POST.get("op") == "lift":
            lifted = restrictions.lift(model, client_id, user=request.user, ip=client_ip(request))
            messages.success(request, f"Restriction of {client_id} lifted." if lifted else f"{client_id} had no restriction.")
        else:
            if hours not in RESTRICT_HOURS:
                raise restrictions.RestrictionError("hours", "choose 1, 24 or 168 hours, or until lifted")
            until = timezone.now() + timedelta(hours=int(hours)) if hours else None
            restriction = restrictions.restrict(model, client_id, action=request.POST.get("action"), until=until,
                                                reason=request.POST.get("reason", ""), user=request.user,
                                                ip=client_ip(request))
            messages.success(request, f"{client_id} restricted: {restriction.action}.")
    except restrictions.RestrictionError as exc:
        messages.error(request, f"Not restricted: {exc.field}: {exc.message}")
    back = request.POST.get("next", "")
    if back.startswith(("/alerts/", "/models/")) and "//" not in back:
        return redirect(back)
    return redirect("model-detail", slug=model.slug)


@roles.role_required(*roles.OPERATE)
@require_POST
def alert_action(request: HttpRequest, alert_id: int, action: str) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    ip = client_ip(request)
    note = request.POST.get("note", "")[:2000]
    try:
        if action == "acknowledge":
            alerting.acknowledge(alert, user=request.user, note=note, ip=ip)
        elif action == "resolve":
            alerting.resolve(alert, user=request.user, note=note, ip=ip)
        elif action == "mute":
            duration = MUTE_CHOICES.get(request.POST.get("duration", ""))
            if duration is None:
                raise AlertActionError(f"choose a mute duration: {', '.join(MUTE_CHOICES)}")
            alerting.mute(alert, user=request.user, until=timezone.now() + duration, reason=request.POST.get("reason", ""), ip=ip)
        else:
            raise AlertActionError(f"unknown action {action!r}")
    except AlertActionError as exc:
        messages.error(request, f"Alert {alert.pk}: {exc}")
    else:
        messages.success(request, f"Alert {alert.pk}: {action}d." if action != "mute" else f"Alert {alert.pk}: muted.")
    back = request.POST.get("next", "")
    if back.startswith("/alerts/") and "//" not in back:
        return redirect(back)
    return redirect("alert-detail", alert_id=alert.pk)


@roles.role_required(*roles.CONFIGURE)
def channel_list(request: HttpRequest) -> HttpResponse:
    error, values = None, {}
    if request.method == "POST":
        values = request.POST
        try:
            channel = create_channel(
                name=values.get("name", ""), kind=values.get("kind", ""), target=values.get("target", ""),
                min_severity=values.get("min_severity", "warning"), models=values.getlist("models") or None,
                rate_limit_per_hour=int(values.get("rate_limit_per_hour") or 30), digest=values.get("digest") == "on",
                secret=values.get("secret", "").strip() or None, user=request.user, ip=client_ip(request))
        except ChannelError as exc:
            error = exc
        except ValueError:
            error = ChannelError("rate_limit_per_hour", "must be a whole number")
        else:
            if channel.new_secret:
                messages.warning(request, f"Channel added. Its signing secret, shown this once (verify each request's "
                                          f"webhook-signature with it): {channel.new_secret}")
            else:
                messages.success(request, "Channel added.")
            return redirect("channel-list")
    return _channel_page(request, error=error, values=values)


def _channel_page(request: HttpRequest, *, error: ChannelError | None, values: Any) -> HttpResponse:
    channels = NotificationChannel.objects.prefetch_related("selected_models")
    return render(request, "monitor/channel_list.html", {
        "channels": channels, "error": error, "values": values, "severities": SEVERITIES,
        "models": RegisteredModel.objects.values_list("slug", flat=True), "kinds": NotificationChannel.KINDS,
    }, status=400 if error else 200)


@roles.role_required(*roles.CONFIGURE)
@require_POST
def channel_action(request: HttpRequest, channel_id: int, action: str) -> HttpResponse:
    channel = get_object_or_404(NotificationChannel, pk=channel_id)
    if action == "delete":
        delete_channel(channel, user=request.user, ip=client_ip(request))
        messages.success(request, f"Channel {channel.name} deleted.")
    elif action == "test":
        try:
            queue_test(channel)
        except ChannelError as exc:
            error = ChannelError(exc.field, f"the test of {channel.name!r} was not queued: {exc.message}")
            return _channel_page(request, error=error, values={})
        messages.success(request, f"Test message to {channel.name} queued: it goes out within seconds, and a failure "
                                  "shows here as the channel's last error.")
    elif action == "enable":
        enable_channel(channel, user=request.user, ip=client_ip(request))
        messages.success(request, f"Channel {channel.name} enabled.")
    else:
        return HttpResponseBadRequest(f"unknown channel action {action[:40]!r}: use delete, test or enable",
                                      content_type="text/plain")
    return redirect("channel-list")


