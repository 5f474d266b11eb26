"""Alerts: list and read them, and move them through their lifecycle (acknowledge, resolve, mute)."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from django.http import HttpRequest, HttpResponse
from ninja import Router

from audits.evidence.format import csv_bytes
from monitor.access import roles
from monitor.alerts import lifecycle, siem
from monitor.alerts.evidence_text import member_id_count, without_member_ids
from monitor.alerts.lifecycle import AlertActionError
from monitor.api.auth import needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import AckIn, AlertOut, MuteIn, Text
from monitor.models import SEVERITIES, Alert, RegisteredModel
from monitor.platform.downloads import attachment
from monitor.platform.moments import in_utc
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry

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
    return _answer(request, list(alerts.order_by("-last_seen", "-id")[offset:offset + limit]))


def _answer(request: HttpRequest, alerts: list[Alert]) -> list[dict]:
    """The alerts' summaries. Member ids in the evidence go to the roles that may look a record up, and each answer
    that shows some is recorded in the security trail; other roles get their counts (`n_member_ids`, ...)."""
    if not roles.may_see_member_ids(request.auth):
        return [{**summary, "evidence": without_member_ids(summary["evidence"])} for summary in
                (alert.summary() for alert in alerts)]
    roles.record_member_id_read(user=request_user(request), ip=client_ip(request), via="api:alerts",
                                shown=[(alert, member_id_count(alert.evidence)) for alert in alerts])
    return [alert.summary() for alert in alerts]


@router.get("/alerts/export", auth=needs(roles.OPERATE), summary="Alert events for a SIEM: OCSF NDJSON or CSV",
            response={200: None, 400: dict, 403: dict})
def export_alerts(request: HttpRequest, since: datetime, format: str = "ocsf", until: datetime | None = None,  # noqa: A002
                  model: Text = "", limit: int = 100_000) -> HttpResponse:
    """Declared before /alerts/{alert_id} so that "export" is not read as an alert id. One OCSF Detection Finding (class_uid 2004) per alert event since `since` (ISO 8601), oldest first, as NDJSON
    (`format=ocsf`), or one CSV row per event (`format=csv`). Opened creates the finding, resolved closes it; every
    export is recorded in the security trail."""
    problems = []
    if format not in ("ocsf", "csv"):
        problems.append(problem("format", "ocsf or csv"))
    # In UTC before the database sees them: PostgreSQL refuses offsets past ±16 h, and year 1 at +14:00 falls off
    # the calendar in the conversion.
    bounds: dict[str, datetime | None] = {"since": None, "until": None}
    for name, value in (("since", since), ("until", until)):
        try:
            bounds[name] = in_utc(value) if value is not None else None
        except ValueError as exc:
            problems.append(problem(name, f"an ISO 8601 time that {exc} (e.g. 2026-12-01T00:00:00Z)"))
    if not 1 <= limit <= 1_000_000:
        problems.append(problem("limit", "1 ≤ limit ≤ 1000000"))
    if model and not RegisteredModel.objects.filter(slug=model).exists():
        problems.append(problem("model", f"no model {model!r:.80}"))
    if problems:
        raise ApiError(400, "invalid export request", problems)
    rows = list(siem.events(since=bounds["since"] or since, until=bounds["until"], model=model, limit=limit))
    TrailEntry.record(action="alerts.exported", actor=request_user(request), ip=client_ip(request),
                      object_type="alert_export", after={"format": format, "since": since.isoformat(),
                                                         "until": until.isoformat() if until else None,
                                                         "model": model or None, "events": len(rows)})
    if format == "csv":
        return attachment(csv_bytes(siem.CSV_COLUMNS, [siem.csv_row(e) for e in rows]), filename="alert-events.csv",
                          content_type="text/csv; charset=utf-8")
    body = "".join(json.dumps(siem.ocsf_finding(e), separators=(",", ":"), ensure_ascii=False) + "\n" for e in rows)
    return HttpResponse(body, content_type="application/x-ndjson; charset=utf-8")


@router.get("/alerts/{alert_id}", auth=needs(roles.READ), summary="One alert", response={200: AlertOut, 403: dict, 404: dict})
def get_alert(request: HttpRequest, alert_id: int) -> dict:
    return _answer(request, [_alert(alert_id)])[0]


def _act(request: HttpRequest, alert_id: int, action: Callable[[Alert], Alert]) -> dict:
    alert = _alert(alert_id)
    try:
        return _answer(request, [action(alert)])[0]
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
    return _act(request, alert_id, lambda a: lifecycle.mute(a, user=request_user(request), until=body.until,
                                                            reason=body.reason, ip=client_ip(request)))

