"""What goes into an evidence bundle, read from the database as plain dicts: the model, its policy, the audit
runs, the alerts with their lifecycle, the audit-log segment and the software versions. Reading never writes.

The segment is the whole chain of the period, but only the entries about the bundle's model are in it in full;
every other entry (other models' lookups, other people's logins) is a link of the chain: its number, its hash and
the hash before it, so the chain still verifies without telling the auditor what the entry said."""
from __future__ import annotations

import platform
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Prefetch, Q

from audits.evidence.format import EVIDENCE_DENY_KEYS, LINK_KEYS
from audits.models import AuditPolicy, AuditRun
from monitor.models import Alert, AlertEvent, ApiToken, ClientRestriction, Delivery, RegisteredModel
from monitor.models.alerts import UNRESOLVED
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
