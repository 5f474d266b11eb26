"""Alerts: list and read them, and move them through their lifecycle (acknowledge, resolve, mute)."""
from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from ninja import Router

from monitor.access import roles
from monitor.alerts import lifecycle
from monitor.alerts.lifecycle import AlertActionError
from monitor.api.auth import needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import AckIn, AlertOut, MuteIn, Text
from monitor.models import SEVERITIES, Alert
from monitor.trail.hooks import client_ip

router = Router(tags=["alerts"])

STATUS_FILTERS = ("open", "acknowledged", "resolved", "muted", "unresolved")


def _alert(alert_id: int) -> Alert:
    alert = Alert.objects.select_related("model", "acknowledged_by", "resolved_by").filter(pk=alert_id).first()
    if alert is None:
        raise ApiError(404, f"no alert with id {alert_id}")
    return alert


@router.get("/alerts", auth=needs(roles.READ), summary="Alerts, newest first", response={200: list[AlertOut], 400: dict, 403: dict})
def list_alerts(request: HttpRequest, status: str = "", model: Text = "", severity: str = "", client: Text = "",
                limit: int = 100, offset: int = 0) -> list[dict]:
    problems = []
    if status and status not in STATUS_FILTERS:
        problems.append(problem("status", f"one of {', '.join(STATUS_FILTERS)}"))
    if severity and severity not in SEVERITIES:
        problems.append(problem("severity", f"one of {', '.join(SEVERITIES)}"))
    if not 1 <= limit <= 1000:
        problems.append(problem("limit", "1 ≤ limit ≤ 1000"))
    if not 0 <= offset < 2**63:  # the database counts rows in a signed 64-bit integer
        problems.append(problem("offset", "0 ≤ offset < 2^63"))
    if problems:
        raise ApiError(400, "invalid filter", problems)
    alerts = Alert.objects.select_related("model", "acknowledged_by", "resolved_by").matching(
        status=status, model=model, severity=severity, client=client)
    return [a.summary() for a in alerts.order_by("-last_seen", "-id")[offset:offset + limit]]


@router.get("/alerts/{alert_id}", auth=needs(roles.READ), summary="One alert", response={200: AlertOut, 403: dict, 404: dict})
def get_alert(request: HttpRequest, alert_id: int) -> dict:
    return _alert(alert_id).summary()


def _act(request: HttpRequest, alert_id: int, action: Callable[[Alert], Alert]) -> dict:
    alert = _alert(alert_id)
    try:
        return action(alert).summary()
    except AlertActionError as exc:
        raise ApiError(409, str(exc)) from exc


@router.post("/alerts/{alert_id}/acknowledge", auth=needs(roles.OPERATE), summary="Acknowledge an alert",
             response={200: AlertOut, 400: dict, 403: dict, 404: dict, 409: dict})
def acknowledge_alert(request: HttpRequest, alert_id: int, body: AckIn | None = None) -> dict:
    note = body.note if body else ""
    return _act(request, alert_id,
                lambda a: lifecycle.acknowledge(a, user=request_user(request), note=note, ip=client_ip(request)))


@router.post("/alerts/{alert_id}/resolve", auth=needs(roles.OPERATE), summary="Resolve an alert",
             response={200: AlertOut, 400: dict, 403: dict, 404: dict, 409: dict})
def resolve_alert(request: HttpRequest, alert_id: int, body: AckIn | None = None) -> dict:
    note = body.note if body else ""
    return _act(request, alert_id,
                lambda a: lifecycle.resolve(a, user=request_user(request), note=note, ip=client_ip(request)))


@router.post("/alerts/{alert_id}/mute", auth=needs(roles.OPERATE), summary="Mute an alert until a time, with a reason",
             response={200: AlertOut, 400: dict, 403: dict, 404: dict, 409: dict})
def mute_alert(request: HttpRequest, alert_id: int, body: MuteIn) -> dict:
    if body.until.tzinfo is None:
        raise ApiError(400, "invalid request", [problem("until", "needs a timezone (Z or +00:00)")])
    return _act(request, alert_id, lambda a: lifecycle.mute(a, user=request_user(request), until=body.until,
                                                            reason=body.reason, ip=client_ip(request)))
