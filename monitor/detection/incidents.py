"""One incident per attacking actor: the findings of every detector on one client, and on the accounts that account
linking ties to it, fold into one alert. Its severity is the strongest signal's; its evidence keeps each detector's
finding (`signals`) and each account (`accounts`, also rows of AlertAccount so `?client=` finds the incident from any
of them). The first detector names the alert (`kind`), so its sentence leads; the others follow as lines."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.alerts.lifecycle import Signal, raise_signal
from monitor.detection.detectors import Finding, detector_title
from monitor.models import Alert, AlertAccount, AlertSource, AlertStatus, RegisteredModel
from monitor.platform.severity import Severity

MAX_ACCOUNTS = 50


@dataclass
class Actor:
    """Clients that are one attacker as far as the scanner can tell, with their new findings."""

    clients: set[str]
    findings: list[Finding] = field(default_factory=list)
    alert: Alert | None = None


def _links(findings: list[Finding]) -> dict[str, str]:
    """Union-find over the clients of these findings: account linking's `linked_clients` join one actor."""
    parent: dict[str, str] = {}

    def find(client: str) -> str:
        parent.setdefault(client, client)
        while parent[client] != client:
            parent[client] = parent[parent[client]]
            client = parent[client]
        return client

    for finding in findings:
        find(finding.client_id)
        for other in finding.evidence.get("linked_clients") or []:
            parent[find(str(other))] = find(finding.client_id)
    return {client: find(client) for client in list(parent)}


def group_by_actor(model: RegisteredModel, findings: list[Finding]) -> list[Actor]:
    """Findings grouped by actor, each actor attached to the open incident of any of its accounts (the oldest)."""
    root = _links(findings)
    actors: dict[str, Actor] = {}
    for client, top in root.items():
        actors.setdefault(top, Actor(clients=set())).clients.add(client)
    for finding in findings:
        actors[root[finding.client_id]].findings.append(finding)
    open_accounts = list(AlertAccount.objects.select_related("alert")
                         .filter(alert__model=model, alert__source=AlertSource.DETECTOR, client_id__in=set(root))
                         .exclude(alert__status=AlertStatus.RESOLVED))
    for actor in actors.values():
        known = [account.alert for account in open_accounts if account.client_id in actor.clients]
        if known:
            actor.alert = min(known, key=lambda a: (a.first_seen, a.pk))
    return [actor for actor in actors.values() if actor.findings]


def opens_incident(actor: Actor) -> bool:
    """An actor with an open incident always updates it; a new one opens an incident only with a finding above
    `info`. Info is a signal that is not evidence of an attack on its own (a heavy but steady client's volume):
    counting it would spend the false-alarm budget on clients nobody should page about."""
    return actor.alert is not None or any(Severity(f.severity).rank > Severity.INFO.rank for f in actor.findings)


def _signal_entry(finding: Finding) -> dict[str, Any]:
    return {"client_id": finding.client_id, "score": finding.score, "severity": finding.severity,
            "evidence": finding.evidence}


def raise_incident(model: RegisteredModel, actor: Actor, *, quiet_period: Any,
                   finding_ids: list[int]) -> tuple[Alert, bool]:
    """Open or update the actor's incident with its new findings."""
    existing = actor.alert
    signals: dict[str, Any] = dict((existing.evidence or {}).get("signals") or {}) if existing else {}
    accounts = set((existing.evidence or {}).get("accounts") or []) if existing else set()
    accounts |= actor.clients
    for finding in sorted(actor.findings, key=lambda f: f.score):
        current = signals.get(finding.detector)
        if current is None or finding.score >= current.get("score", 0):
            signals[finding.detector] = _signal_entry(finding)
    strongest = max(actor.findings, key=lambda f: (Severity(f.severity).rank, f.score))
    kind = existing.kind if existing else strongest.detector
    primary = existing.client_id if existing else strongest.client_id
    lead = signals.get(kind) or _signal_entry(strongest)
    severity = max((s["severity"] for s in signals.values()), key=lambda s: Severity(s).rank)
    others = sorted(set(signals) - {kind})
    title = detector_title(kind) + (f" + {', '.join(others)}" if others else "")
    if len(accounts) > 1:
        title += f" ({len(accounts)} linked accounts)"
    evidence = {"score": max(s["score"] for s in signals.values()), **lead["evidence"],
                "signals": signals, "accounts": sorted(accounts)[:MAX_ACCOUNTS], "n_accounts": len(accounts)}
    return raise_signal(Signal(source=AlertSource.DETECTOR, kind=kind, model=model, severity=severity,
                               client_id=primary, title=title, evidence=evidence, quiet_period=quiet_period,
                               accounts=tuple(sorted(accounts)[:MAX_ACCOUNTS]), finding_ids=tuple(finding_ids)))
