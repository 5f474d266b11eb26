"""What goes into an evidence bundle, read from the database as plain dicts: the model, its policy, the audit
runs, the alerts with their lifecycle, what the controls annex reads (detector calibration, the gateway's
restrictions, DP training on record, artifact versions deployed, gate candidates), the audit-log segment and the
software versions. Reading never writes.

The segment is the whole chain of the period, but only the entries about the bundle's model are in it in full;
every other entry (other models' lookups, other people's logins) is a link of the chain: its number, its hash and
the hash before it, so the chain still verifies without telling the auditor what the entry said."""
from __future__ import annotations

import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Prefetch, Q

from audits.attacks.verdict import needs_references
from audits.candidates import needs_reason
from audits.evidence.format import EVIDENCE_DENY_KEYS, LINK_KEYS
from audits.models import AuditPolicy, AuditRun, CandidateStatus, GateCandidate, HardenedArtifact
from monitor.gateway.restrictions import BLOCK, THROTTLE
from monitor.models import (
    Alert,
    AlertEvent,
    AlertSource,
    ApiToken,
    ClientDayRollup,
    ClientRestriction,
    Delivery,
    DetectorState,
    RegisteredModel,
)
from monitor.models.alerts import UNRESOLVED
from monitor.platform.output_policy import OutputPolicy
from monitor.platform.versions import package_versions
from monitor.trail.chain import GENESIS, canonical_json
from monitor.trail.models import SignedTrailHead, TrailEntry

SOFTWARE = ("Django", "weasyprint", "matplotlib", "cryptography", "pypdf")


def model_data(model: RegisteredModel) -> dict:
    artifact = model.current_artifact()
    endpoint = None
    if model.endpoint_url:
        # Scheme, host and path only: a query string or user info may hold a credential.
        parts = urlsplit(model.endpoint_url)
        endpoint = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
    return {
        "slug": model.slug, "name": model.name, "team": model.team, "source": model.source, "endpoint": endpoint,
        "version": model.version, "output_policy": model.output_policy, "label_column": model.label_column,
        "feature_names": list(model.feature_names), "class_labels": list(model.class_labels),
        "registered_at": model.created_at,
        "artifact": {"version": artifact.version, "format": artifact.format, "sha256": artifact.sha256,
                     "size": artifact.size, "filename": artifact.filename, "uploaded_at": artifact.created_at}
        if artifact else None,
        "datasets": {d.kind: {"rows": d.n_rows, "sha256": d.sha256, "filename": d.filename, "uploaded_at": d.uploaded_at}
                     for d in model.datasets.order_by("kind")},
    }


def policy_data(model: RegisteredModel) -> dict:
    policy = AuditPolicy.objects.for_model(model)
    return {"enabled": policy.enabled, "cadence_hours": policy.cadence_hours, "updated_at": policy.updated_at,
            **policy.config()}


def run_data(run: AuditRun) -> dict:
    """The run's full summary, who asked for it, and the name of its leading attack (AuditRun.leading_attack(),
    the one rule every page and bundle uses)."""
    data = run.summary(full=True)
    data["requested_by"] = run.requested_by.get_username() if run.requested_by else None
    data["attempts"] = run.attempts
    data["leading_attack"] = (run.leading_attack() or {}).get("name")
    # The state of the art in membership inference: the attacks with reference models (LiRA, RMIA), the ones the
    # verdict's weak-audit rule calls the strongest.
    data["reference_attacks"] = [attack["name"] for attack in run.attack_results if needs_references(attack["name"])]
    return data


def alerts_data(*, model: RegisteredModel, start: datetime, end: datetime) -> list[dict]:
    """The model's alerts alive at any time in the period, each with its whole lifecycle."""
    alerts = (Alert.objects.filter(model=model, first_seen__lte=end)
              .filter(Q(last_seen__gte=start) | Q(status__in=UNRESOLVED) | Q(resolved_at__gte=start)
                      | Q(events__at__gte=start, events__at__lte=end))
              .distinct().select_related("model", "acknowledged_by", "resolved_by").order_by("first_seen", "pk")
              .prefetch_related(Prefetch("events", queryset=AlertEvent.objects.order_by("at", "pk")),
                                Prefetch("deliveries", queryset=Delivery.objects.select_related("channel")
                                         .order_by("created_at", "pk"))))
    out = []
    for alert in alerts:
        item = alert.summary()
        item["evidence"] = _scrub(item["evidence"])
        item["events"] = [{"kind": e.kind, "at": e.at, "actor": e.actor_name, "note": e.note, "data": _scrub(e.data)}
                          for e in alert.events.all()]
        # Channel name and kind only: a channel's target is an address list or a webhook secret.
        item["deliveries"] = [{"channel": d.channel.name, "channel_kind": d.channel.kind, "event": d.event,
                               "status": d.status, "attempts": d.attempts, "sent_at": d.sent_at, "created_at": d.created_at}
                              for d in alert.deliveries.all()]
        out.append(item)
    return out


def detection_data(*, model: RegisteredModel, start: datetime, end: datetime) -> dict:
    """The detectors' calibration as it stands at export (the false-alarm rate each was calibrated to, the window's
    client-days) and what the period saw: detector incidents opened over the client-days logged (folded rollups)."""
    state = DetectorState.objects.filter(model=model).defer("fingerprint_key").first()
    calibration = state.calibration if state is not None else {}
    window = (state.calibration_window if state is not None else None) or {}
    return {
        "false_alarm_budget": model.false_alarm_budget, "unit": "incidents per benign client-day",
        "calibrated_at": state.calibrated_at if state is not None else None,
        "detectors": {name: entry.get("false_alarm_rate") for name, entry in sorted(calibration.items())
                      if not name.startswith("_") and isinstance(entry, dict)},
        # Counts only: the window's client lists name this model's clients and say nothing more here.
        "window": {**{key: window.get(key) for key in ("from_id", "to_id", "queries", "clients", "client_days",
                                                         "reason", "previous_client_days")},
                   **{key: len(window.get(key) or []) for key in ("trimmed_clients", "incident_clients",
                                                                  "excluded_clients")}},
        "advised_client_days": DetectorState.ADVISED_CLIENT_DAYS,
        "period": {"client_days": ClientDayRollup.objects.filter(
                       model=model, day__gte=start.astimezone(UTC).date(), day__lte=end.astimezone(UTC).date()).count(),
                   "incidents": Alert.objects.filter(model=model, source=AlertSource.DETECTOR, first_seen__gte=start,
                                                     first_seen__lte=end).count()},
    }


def gateway_data(*, model: RegisteredModel, start: datetime, end: datetime) -> dict:
    """What callers get (the output policy) and how clients are restricted: the model's automatic restriction and
    every restriction in force at any time in the period."""
    policy = OutputPolicy.parse(model.output_policy)
    action = model.auto_restrict_action or None
    restrictions = (ClientRestriction.objects.filter(model=model, created_at__lte=end)
                    .filter(Q(lifted_at__isnull=True) | Q(lifted_at__gte=start))
                    .filter(Q(until__isnull=True) | Q(until__gte=start))
                    .select_related("created_by").order_by("created_at", "pk"))
    return {
        "output_policy": str(policy), "outputs_reduced": policy.kind != "full",
        "auto_restrict": {"action": action, "severity": model.auto_restrict_severity, "hours": model.auto_restrict_hours,
                          "throttle": action == THROTTLE, "limits_rate": action in (THROTTLE, BLOCK)},
        "throttle_queries_per_minute": settings.RESTRICTED_QUERIES_PER_MINUTE,
        "restrictions": [{"id": r.pk, "client": r.client_id, "action": r.action, "limits_rate": r.action in (THROTTLE, BLOCK),
                          "created_at": r.created_at, "created_by": r.created_by.get_username() if r.created_by else "system",
                          "until": r.until, "lifted_at": r.lifted_at, "lift_reason": r.lift_reason, "reason": r.reason}
                         for r in restrictions],
    }


def training_data(model: RegisteredModel) -> dict:
    """The deployed artifact and every differentially private artifact on record for the model (the DP candidates
    remediation runs stored, with their ε): the only training the product knows anything about."""
    deployed = model.artifacts.filter(version=model.version).values("version", "sha256", "created_at").first()
    dp = []
    for stored in (HardenedArtifact.objects.filter(run__model=model).order_by("created_at", "pk")
                   .values("run_id", "sha256", "provenance", "created_at")):
        provenance = stored["provenance"] or {}
        if provenance.get("kind") == "dp":
            setting = provenance.get("setting") or {}
            dp.append({"run": stored["run_id"], "sha256": stored["sha256"], "training": setting.get("training"),
                       "epsilon": setting.get("epsilon"), "created_at": stored["created_at"]})
    return {"deployed_artifact": deployed, "dp_artifacts": dp}


def deployments_data(*, model: RegisteredModel, start: datetime, end: datetime, versions: Iterable[int] = ()) -> list[dict]:
    """The artifact versions created in the period (and `versions`), each with the gate candidate it was promoted
    from (None: it did not come through the gate; `first`: the one the model was registered with)."""
    first = model.artifacts.order_by("version").values_list("version", flat=True).first()
    rows = list(model.artifacts.filter(Q(created_at__gte=start, created_at__lte=end) | Q(version__in=list(versions)))
                .order_by("version").values("version", "sha256", "format", "created_at"))
    promoted = dict(GateCandidate.objects.filter(model=model, promoted_version__in=[r["version"] for r in rows])
                    .values_list("promoted_version", "pk"))
    return [{**row, "first": row["version"] == first, "candidate": promoted.get(row["version"])} for row in rows]


def candidates_data(*, model: RegisteredModel, start: datetime, end: datetime, versions: Iterable[int] = ()) -> list[dict]:
    """The gate candidates of the period (submitted or promoted in it), and those gated against or promoted to
    `versions` (for a run: the version it audited): each verdict, its reasons and report, and any promotion with
    who made it and the reason written for it."""
    versions = list(versions)
    candidates = (GateCandidate.objects.filter(model=model)
                  .filter(Q(created_at__gte=start, created_at__lte=end) | Q(promoted_at__gte=start, promoted_at__lte=end)
                          | Q(production_version__in=versions) | Q(promoted_version__in=versions))
                  .defer("artifact_data", "members_ciphertext").select_related("created_by", "promoted_by")
                  .order_by("created_at", "pk"))
    out = []
    for c in candidates:
        decided = c.status == CandidateStatus.DONE and bool(c.verdict)
        out.append({
            "id": c.pk, "status": c.status, "verdict": c.verdict or None, "exit_code": c.exit_code, "decided": decided,
            "passed_gate": decided and not needs_reason(c), "artifact_name": c.artifact_name,
            "artifact_sha256": c.artifact_sha256, "artifact_format": c.artifact_format, "artifact_size": c.artifact_size,
            "own_members_rows": c.members_rows, "production_version": c.production_version, "alpha": c.alpha,
            "created_by": c.created_by.get_username() if c.created_by else None, "created_at": c.created_at,
            "finished_at": c.finished_at, "error": c.error or None, "reasons": list((c.report or {}).get("reasons") or []),
            "report": _scrub(c.report), "promoted_version": c.promoted_version,
            "promoted_by": c.promoted_by.get_username() if c.promoted_by else None, "promoted_at": c.promoted_at,
            "promotion_reason": c.promotion_reason or None,
        })
    return out


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in EVIDENCE_DENY_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def log_segment(*, model: RegisteredModel, start: datetime, last_seq: int) -> dict:
    """Every entry from the first one at or after `start` through `last_seq`, contiguous, so it verifies alone: the
    entries about `model` in full, the others as links."""
    first_seq = (TrailEntry.objects.filter(at__gte=start, seq__lte=last_seq).order_by("seq")
                 .values_list("seq", flat=True).first()) or last_seq
    previous = TrailEntry.objects.filter(seq=first_seq - 1).values_list("hash", flat=True).first()
    # A missing predecessor (deleted row) leaves no anchor: the bundle's check then names the first entry.
    anchor = GENESIS if first_seq == 1 else (previous or "")
    objects = model_objects(model)
    lines = [log_line(entry) if concerns(entry, objects=objects, slug=model.slug) else link_line(entry)
             for entry in TrailEntry.objects.filter(seq__gte=first_seq, seq__lte=last_seq).order_by("seq")
             .iterator(chunk_size=2000)]
    return {"anchor_prev_hash": anchor, "first_seq": first_seq, "last_seq": last_seq, "lines": lines}


def model_objects(model: RegisteredModel) -> set[str]:
    """"app_label.model:pk" of the model and of everything that is its own: audit runs, their policy, alerts, client
    restrictions and tokens (the way TrailEntry.record names an entry's object)."""
    objects = {f"{RegisteredModel._meta.label_lower}:{model.pk}"}
    for kind in (AuditRun, AuditPolicy, Alert, ClientRestriction, ApiToken):
        objects.update(f"{kind._meta.label_lower}:{pk}"
                       for pk in kind._default_manager.filter(model=model).values_list("pk", flat=True))
    return objects


def concerns(entry: TrailEntry, *, objects: set[str], slug: str) -> bool:
    """Whether the entry is about the model, as stored: its object is one of the model's `objects`, or its before
    or after names the model (entries about a deleted run, alert or finding, exports) or lists one of its objects
    (a read of member ids across several alerts)."""
    if f"{entry.object_type}:{entry.object_id}" in objects:
        return True
    for side in (entry.before, entry.after):
        if isinstance(side, dict):
            listed = side.get("objects")
            if side.get("model") == slug or (isinstance(listed, dict) and not objects.isdisjoint(listed)):
                return True
    return False


def log_line(entry: TrailEntry) -> dict:
    """One audit_log.jsonl line: every field of the entry, and the exact payload string its hash covers."""
    payload = entry.payload()
    return {**payload, "actor_id": entry.actor_id, "prev_hash": entry.prev_hash, "hash": entry.hash,
            "payload": canonical_json(payload)}


def link_line(entry: TrailEntry) -> dict:
    """An entry that is not the model's: what the chain needs of it, nothing of what it says."""
    return {key: getattr(entry, key) for key in LINK_KEYS}


def signed_head() -> dict | None:
    """The latest signed head of the trail (monitor.trail.signing), None before the first one is signed."""
    latest = SignedTrailHead.objects.order_by("-seq").first()
    return latest.as_json() if latest is not None else None


def software() -> dict:
    """What built the bundle (the audit's own versions are in each run's environment)."""
    return {"python": platform.python_version(), "packages": package_versions(SOFTWARE)}
