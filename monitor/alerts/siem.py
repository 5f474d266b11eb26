"""Alert events for a SIEM: one OCSF Detection Finding (class_uid 2004, built with py-ocsf-models) per alert event,
or a CSV row. Opened creates the finding, resolved closes it, everything in between updates it; the severity and
status are the ones the event set. Evidence is counts and ids (detectors never put feature values in it); training-member
ids leave the product as their counts only, with the link back to the alert."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from py_ocsf_models.events.findings.activity_id import ActivityID
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.events.findings.detection_finding_type_id import DetectionFindingTypeID
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.events.findings.status_id import StatusID
from py_ocsf_models.objects.evidence_artifacts import EvidenceArtifacts
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Product
from py_ocsf_models.objects.resource_details import ResourceDetails

from monitor.alerts.evidence_text import describe, evidence_lines, without_member_ids
from monitor.alerts.transports import alert_url
from monitor.models import AlertEvent

OCSF_VERSION = "1.3.0"
SEVERITY_ID = {"info": SeverityID.Informational, "warning": SeverityID.Medium, "critical": SeverityID.Critical}
STATUS_ID = {"opened": StatusID.New, "repeated": StatusID.New, "escalated": StatusID.New, "reminder": StatusID.New,
             "acknowledged": StatusID.InProgress, "muted": StatusID.Suppressed, "suppressed": StatusID.Suppressed,
             "unmuted": StatusID.New, "resolved": StatusID.Resolved}
ACTIVITY = {"opened": (ActivityID.Create, DetectionFindingTypeID.Create),
            "resolved": (ActivityID.Close, DetectionFindingTypeID.Close)}
CSV_COLUMNS = ["event_id", "time", "event", "alert_id", "fingerprint", "model", "client_id", "source", "kind",
               "title", "severity", "status", "actor", "note", "summary", "url"]


def events(*, since: datetime, until: datetime | None = None, model: str = "", limit: int = 100_000) -> Iterator[AlertEvent]:
    rows = AlertEvent.objects.select_related("alert", "alert__model").filter(at__gte=since).order_by("at", "id")
    if until is not None:
        rows = rows.filter(at__lt=until)
    if model:
        rows = rows.filter(alert__model__slug=model)
    return rows[:limit].iterator(chunk_size=2000)


def severity_at(event: AlertEvent) -> str:
    """The severity as of this event: what it opened or was raised to, else the alert's."""
    data = event.data or {}
    return str(data.get("to") or (data.get("severity") if event.kind == "opened" else None) or event.alert.severity)


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def ocsf_finding(event: AlertEvent) -> dict[str, Any]:
    alert = event.alert
    evidence = without_member_ids(alert.evidence)
    url = alert_url(alert)
    activity, type_uid = ACTIVITY.get(event.kind, (ActivityID.Update, DetectionFindingTypeID.Update))
    severity = severity_at(event)
    millis = _millis(event.at)
    resources = [ResourceDetails(type="ML Model", name=alert.model.slug, uid=str(alert.model.pk),
                                 version=str(alert.model.version))]
    if alert.client_id:
        resources.append(ResourceDetails(type="API Client", name=alert.client_id, uid=alert.client_id))
    finding = DetectionFinding(
        activity_id=activity, activity_name=activity.name, type_uid=type_uid, type_name=f"Detection Finding: {activity.name}",
        severity_id=SEVERITY_ID.get(severity, SeverityID.Unknown), severity=severity.capitalize(),
        status_id=STATUS_ID.get(event.kind, StatusID.Other), status=event.kind, time=millis,
        message=describe(alert.kind, evidence) or alert.title,
        metadata=Metadata(version=OCSF_VERSION, uid=f"alert-event-{event.pk}", correlation_uid=alert.fingerprint,
                          logged_time=millis, product=Product(name="MI Monitor", vendor_name="MI Monitor",
                                                              uid="mi-monitor")),
        finding_info=FindingInformation(
            uid=str(alert.pk), title=alert.title or alert.kind, desc="\n".join(evidence_lines(evidence, kind=alert.kind)),
            types=[f"{alert.source}/{alert.kind}", "OWASP ML04:2023 membership inference"], src_url=url,
            created_time=_millis(alert.first_seen), first_seen_time=_millis(alert.first_seen),
            last_seen_time=_millis(alert.last_seen)),
        resources=resources,
        evidences=[EvidenceArtifacts(data={"evidence": evidence, "occurrences": alert.occurrences})],
        unmapped={"event": event.kind, "actor": event.actor_name, "note": event.note, "incident": alert.incident},
    )
    return finding.model_dump(mode="json", exclude_none=True)


def csv_row(event: AlertEvent) -> dict[str, Any]:
    alert = event.alert
    return {"event_id": event.pk, "time": event.at, "event": event.kind, "alert_id": alert.pk,
            "fingerprint": alert.fingerprint, "model": alert.model.slug, "client_id": alert.client_id, "source": alert.source,
            "kind": alert.kind, "title": alert.title, "severity": severity_at(event), "status": alert.status,
            "actor": event.actor_name, "note": event.note,
            "summary": " | ".join(evidence_lines(alert.evidence, kind=alert.kind)),
            "url": alert_url(alert)}
