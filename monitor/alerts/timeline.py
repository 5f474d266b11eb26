"""An alert's timeline: the one place that appends its events (the lifecycle's own changes, and the restrictions
the gateway puts on or lifts from the alert's clients)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.models import Alert, AlertEvent, AlertEventKind, AlertStatus, RegisteredModel

MAX_NOTE = 500


def actor_of(user: Any) -> Any:
    """A signed-in user, or None for the system (a scan, beat, an expiry)."""
    return user if getattr(user, "pk", None) else None


def record_event(alert: Alert, kind: AlertEventKind, *, actor: Any = None, note: str = "",
                 data: dict | None = None) -> AlertEvent:
    actor = actor_of(actor)
    return AlertEvent.objects.create(alert=alert, kind=kind, actor=actor,
                                     actor_name=actor.get_username() if actor is not None else "system",
                                     note=note, data=data or {})


def record_on_client_alerts(*, model_id: int, client_id: str, kind: AlertEventKind, actor: Any, note: str,
                            data: dict) -> int:
    """The event on the timeline of every unresolved alert about this client; returns how many."""
    alerts = list(Alert.objects.filter(model_id=model_id, client_id=client_id).unresolved())
    for alert in alerts:
        record_event(alert, kind, actor=actor, note=note[:MAX_NOTE], data=data)
    return len(alerts)


def record_past_alert(model: RegisteredModel, *, fingerprint: str, source: str, kind: str, title: str, severity: str,
                      client_id: str, evidence: dict, events: list[tuple[str, datetime, str, dict]],
                      status: str) -> Alert:
    """An alert together with its whole past timeline, `events` as (kind, at, actor name, data with an optional
    "note"), oldest first: history written after the fact (the demo's thirty days), never a live signal."""
    first, last = events[0][1], events[-1][1]
    alert = Alert.objects.create(
        fingerprint=fingerprint, source=source, kind=kind, title=title, model=model, client_id=client_id,
        severity=severity, status=status, first_seen=first, last_seen=last, occurrences=len(events),
        evidence=evidence, resolved_at=last if status == AlertStatus.RESOLVED else None,
        acknowledged_at=next((at for name, at, _, _ in events if name == AlertEventKind.ACKNOWLEDGED), None))
    AlertEvent.objects.bulk_create([AlertEvent(alert=alert, kind=name, at=at, actor_name=actor,
                                               note=data.pop("note", ""), data=data)
                                    for name, at, actor, data in events])
    return alert
