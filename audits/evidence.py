"""Evidence bundles: a signed ZIP that shows an auditor what a membership-inference audit found and
proves that nobody edited the record afterwards (every file hashed in MANIFEST.json, the manifest
signed with Ed25519, the audit-log segment of the period hash-chained), and the check of one.

Nothing in a bundle is a member record value: runs carry metrics, hashes and record ids only.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import logging
import platform
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Prefetch, Q
from django.template.loader import render_to_string
from django.utils import timezone

from audits.models import ATTACK_LABELS, GENESIS, AuditLogEntry, AuditRun, canonical_json
from audits.scheduling import policy_for
from monitor.models import Alert, AlertEvent, Delivery, RegisteredModel
from monitor.models.alerts import UNRESOLVED
from monitor.summaries import alert_summary, audit_summary

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

FORMAT = "mi-monitor-evidence/1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "MANIFEST.json", "MANIFEST.sig", "public_key.pem"
REQUIRED_FILES = ("report.pdf", "report.html", "audit.json", "metrics.csv", "roc.csv", "alerts.csv",
                  "audit_log.jsonl", PUBLIC_KEY)
FPRS = ("0.001", "0.01", "0.1")
# The fields of an audit-log entry its hash covers (AuditLogEntry.payload()).
PAYLOAD_KEYS = ("seq", "at", "actor", "ip", "action", "object_type", "object_id", "before", "after")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"; NUL from
# ASVS 5.0 1.2.10: an importer that drops a leading NUL would see the formula behind it).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\x00")
# Alert evidence holds counts, scores and ids by design; keys that could carry a record's content are
# dropped anyway, so that a future detector cannot put member values into a bundle by accident.
EVIDENCE_DENY_KEYS = frozenset({"features", "feature_values", "values", "x", "X", "record", "records", "row", "rows",
                                "point", "points", "centre", "center", "output", "outputs", "inputs"})
MAX_LOG_ROWS_IN_REPORT = 80
MAX_CHAIN_FAILURES = 20
MAX_MANIFEST_BYTES = 16 * 2**20
SAFE_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what _zip writes; both read in bounded steps

ATTACK_NOTES = {
    "loss": "Scores each record by the model's loss on it; members have lower loss. No reference models.",
    "confidence": "Scores by the model's confidence in the true label. No reference models.",
    "modified_entropy": "Entropy of the output, modified to use the true label. No reference models.",
    "lira_offline": "Likelihood ratio against a Gaussian fit of OUT reference models per record.",
    "lira_online": "Likelihood ratio between IN and OUT reference-model distributions per record.",
    "rmia": "Likelihood ratio of the record against population samples z, with reference models.",
    "label_only": "Robustness of the predicted label to noise around the record; for label-only outputs.",
}

CONTROLS = [
    {"id": "OWASP ML04:2023", "name": "Membership Inference Attack",
     "requirement": "Test whether an attacker can tell from a model's outputs that a record was in its training data; "
                    "apply and evaluate defences such as output obfuscation.",
     "evidence": "Attacks run and their configuration; headline and per-attack TPR at low FPR with 95 % intervals; "
                 "ROC figures; what-if table of output policies (audit.json, metrics.csv, roc.csv)."},
    {"id": "NIST AI RMF MEASURE 2.10", "name": "Privacy risk is examined and documented",
     "requirement": "Privacy risk of the AI system, as identified in the MAP function, is examined and documented.",
     "evidence": "Empirical ε lower bound, membership advantage, most exposed record ids, per-class slices, "
                 "recommendations; reproducible from the recorded hashes, seeds and versions (audit.json)."},
    {"id": "EU AI Act Art. 15(5)", "name": "Cybersecurity of high-risk AI systems",
     "requirement": "Technical measures to prevent, detect, respond to, resolve and control for attacks on the "
                    "system, including confidentiality attacks.",
     "evidence": "Scheduled audits against a policy (detect), query monitoring alerts (detect), alert lifecycle "
                 "(respond, resolve), output-policy what-if (prevent, control) — alerts.csv, audit_log.jsonl."},
    {"id": "SOC 2 CC7.2", "name": "Monitoring for anomalies",
     "requirement": "System components are monitored for anomalies indicative of malicious acts; anomalies are "
                    "analysed to determine whether they are security events.",
     "evidence": "Audit runs in the period and their policy verdicts; detector alerts per client (alerts.csv)."},
    {"id": "SOC 2 CC7.3", "name": "Evaluation of security events",
     "requirement": "Security events are evaluated to determine whether they are incidents.",
     "evidence": "Alert severities, acknowledgements with who/when/note, escalations (alerts.csv, audit_log.jsonl)."},
    {"id": "SOC 2 CC7.4", "name": "Response to security incidents",
     "requirement": "Identified incidents are responded to: understood, contained, remediated and communicated.",
     "evidence": "Resolutions and mutes with reasons, notifications delivered, recommendations; every change is "
                 "in the hash-chained audit log (audit_log.jsonl)."},
]


class EvidenceError(ValueError):
    """A bundle that cannot be built, stated for the person who asked for it."""


# --- keys -----------------------------------------------------------------------------------------------

def signing_key() -> Ed25519PrivateKey:
    """The Ed25519 key from settings.EVIDENCE_SIGNING_KEY (base64 of a 32-byte seed)."""
    try:
        seed = base64.b64decode(settings.EVIDENCE_SIGNING_KEY, validate=True)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("EVIDENCE_SIGNING_KEY must be base64 of 32 random bytes") from exc
    if len(seed) != 32:
        raise ImproperlyConfigured(f"EVIDENCE_SIGNING_KEY must decode to 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_pem() -> bytes:
    """The public half of the signing key, as PEM (SubjectPublicKeyInfo): what auditors verify with."""
    return signing_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


# --- building -------------------------------------------------------------------------------------------

def build_run_bundle(run: AuditRun, *, exported_by: AbstractBaseUser | None = None) -> bytes:
    """The bundle for one finished (or failed) audit run; its period runs from the request to the export."""
    run = AuditRun.objects.select_related("model", "requested_by").get(pk=run.pk)  # the stored run, not a copy
    if run.status in ("queued", "running"):
        raise EvidenceError(f"audit {run.pk} is {run.status}; export it when it has finished")
    return _export(kind="run", model=run.model, runs=[run], start=run.created_at, end=None, subject=run,
                   exported_by=exported_by)


def build_period_bundle(*, model: RegisteredModel, start: datetime, end: datetime,
                        exported_by: AbstractBaseUser | None = None) -> bytes:
    """The bundle for every audit run of `model` requested in [start, end), the latest finished one in detail."""
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise EvidenceError("start and end need a time zone")
    if start >= end:
        raise EvidenceError(f"the period is empty: {start.isoformat()} is not before {end.isoformat()}")
    runs = list(AuditRun.objects.filter(model=model, created_at__gte=start, created_at__lt=end)
                .select_related("model", "requested_by").order_by("created_at"))
    return _export(kind="period", model=model, runs=runs, start=start, end=end, subject=model, exported_by=exported_by)


def _export(*, kind: str, model: RegisteredModel, runs: list[AuditRun], start: datetime, end: datetime | None,
            subject: AuditRun | RegisteredModel, exported_by: AbstractBaseUser | None) -> bytes:
    export_id = uuid.uuid4().hex
    exporter = _user_name(exported_by) or "system"
    # Logged first, so the segment cut below ends with the export itself.
    entry = AuditLogEntry.record(action="evidence.exported", actor=exported_by, obj=subject, after={
        "export_id": export_id, "kind": kind, "model": model.slug, "runs": [r.pk for r in runs],
        "period": {"start": start, "end": end}, "format": FORMAT,
    })
    exported_at = entry.at
    period_end = end or exported_at
    segment = _log_segment(start=start, last_seq=entry.seq)
    runs_data = [_run_data(run) for run in runs]
    alerts = _alerts(model=model, start=start, end=period_end)
    pem = public_key_pem()
    chain_ok, chain_message = _verify_segment(segment["lines"], anchor=segment["anchor_prev_hash"])
    meta = {
        "format": FORMAT, "export_id": export_id, "kind": kind, "exported_at": exported_at,
        "exported_by": exporter, "period": {"start": start, "end": period_end},
        "audit_log_entry": {"seq": entry.seq, "hash": entry.hash},
        "public_key_sha256": key_fingerprint(signing_key().public_key()),
    }
    chain = {"anchor_prev_hash": segment["anchor_prev_hash"], "first_seq": segment["first_seq"],
             "last_seq": segment["last_seq"], "count": len(segment["lines"]), "export_seq": entry.seq,
             "head_hash": entry.hash, "intact_at_export": chain_ok, "message": chain_message,
             "hash": "sha256(prev_hash + payload), payload = canonical JSON of seq, at, actor, ip, action, "
                     "object_type, object_id, before, after"}
    document = {
        "export": meta, "model": _model_data(model), "policy": _policy_data(model), "runs": runs_data,
        "alerts": alerts, "audit_log": chain, "controls": CONTROLS, "software": _software(),
    }
    files: dict[str, bytes] = {
        "audit.json": _json_bytes(document),
        "metrics.csv": _csv_bytes(METRICS_COLUMNS, _metrics_rows(runs_data)),
        "roc.csv": _csv_bytes(ROC_COLUMNS, _roc_rows(runs_data)),
        "alerts.csv": _csv_bytes(ALERT_COLUMNS, _alert_rows(alerts)),
        "audit_log.jsonl": "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n"
                                   for line in segment["lines"]).encode(),
        PUBLIC_KEY: pem,
    }
    html = render_to_string("audits/report.html", _report_context(document, segment["lines"]))
    files["report.html"] = html.encode()
    files["report.pdf"] = _pdf(html)
    files["README.txt"] = _readme(meta).encode()
    manifest = {
        "format": FORMAT, "export_id": export_id, "kind": kind, "model": model.slug, "runs": [r.pk for r in runs],
        "exported_at": _iso(exported_at), "exported_by": exporter,
        "period": {"start": _iso(start), "end": _iso(period_end)},
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()},
        "audit_log": {key: chain[key] for key in ("anchor_prev_hash", "first_seq", "last_seq", "count", "export_seq",
                                                   "head_hash")},
        "signature": {"algorithm": "Ed25519", "file": SIGNATURE, "public_key": PUBLIC_KEY,
                      "public_key_sha256": meta["public_key_sha256"]},
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    signature = signing_key().sign(manifest_bytes)
    return _zip({**files, MANIFEST: manifest_bytes, SIGNATURE: signature}, when=exported_at)


def _zip(files: dict[str, bytes], *, when: datetime) -> bytes:
    stamp = when.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files, key=lambda n: (n not in (MANIFEST, SIGNATURE), n)):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".pdf") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


# --- what goes in --------------------------------------------------------------------------------------

def _user_name(user: Any) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.get_username()


def _model_data(model: RegisteredModel) -> dict:
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


def _policy_data(model: RegisteredModel) -> dict:
    policy = policy_for(model)
    return {"enabled": policy.enabled, "cadence_hours": policy.cadence_hours, "updated_at": policy.updated_at,
            **policy.config()}


def _run_data(run: AuditRun) -> dict:
    data = audit_summary(run, full=True)
    data["requested_by"] = _user_name(run.requested_by)
    data["attempts"] = run.attempts
    return data


def _alerts(*, model: RegisteredModel, start: datetime, end: datetime) -> list[dict]:
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
        item = alert_summary(alert)
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


def _log_segment(*, start: datetime, last_seq: int) -> dict:
    """Every entry from the first one at or after `start` through `last_seq`, contiguous, so it verifies alone."""
    first_seq = (AuditLogEntry.objects.filter(at__gte=start, seq__lte=last_seq).order_by("seq")
                 .values_list("seq", flat=True).first()) or last_seq
    previous = AuditLogEntry.objects.filter(seq=first_seq - 1).values_list("hash", flat=True).first()
    # A missing predecessor (deleted row) leaves no anchor: the bundle's check then names the first entry.
    anchor = GENESIS if first_seq == 1 else (previous or "")
    lines = [log_line(entry) for entry in
             AuditLogEntry.objects.filter(seq__gte=first_seq, seq__lte=last_seq).order_by("seq").iterator()]
    return {"anchor_prev_hash": anchor, "first_seq": first_seq, "last_seq": last_seq, "lines": lines}


def log_line(entry: AuditLogEntry) -> dict:
    """One audit_log.jsonl line: every field of the entry, and the exact payload string its hash covers."""
    payload = entry.payload()
    return {**payload, "actor_id": entry.actor_id, "prev_hash": entry.prev_hash, "hash": entry.hash,
            "payload": canonical_json(payload)}


def _software() -> dict:
    versions: dict[str, str | None] = {}
    for package in ("Django", "weasyprint", "matplotlib", "cryptography", "pypdf"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "packages": versions}


# --- serialisation ------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default).encode() + b"\n"


def csv_cell(value: Any) -> str | int | float:
    """A CSV cell that a spreadsheet shows and never runs.

    Numbers we computed stay numbers (a negative accuracy drop is not a formula); every text cell that
    starts like a formula gets a leading apostrophe.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_bytes(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode()


METRICS_COLUMNS = ["run_id", "scope", "output_policy", "attack", "metric", "fpr", "value", "ci_low", "ci_high",
                   "reliable", "n_members", "n_nonmembers"]
ROC_COLUMNS = ["run_id", "attack", "point", "fpr", "tpr"]
ALERT_COLUMNS = ["alert_id", "fingerprint", "source", "kind", "title", "client_id", "severity", "status", "first_seen",
                 "last_seen", "occurrences", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at",
                 "muted_until", "mute_reason", "event", "event_at", "event_actor", "event_note"]


def _metrics_rows(runs: list[dict]) -> list[dict]:
    rows: list[dict] = []
    for run in runs:
        policy = (run.get("config") or {}).get("output_policy")
        base = {"run_id": run["id"], "output_policy": policy}
        headline = run.get("headline") or {}
        if headline:
            rows.append({**base, "scope": "headline", "attack": headline.get("auc_attack"), "metric": "auc",
                         "value": headline.get("auc")})
            rows.append({**base, "scope": "headline", "attack": headline.get("epsilon_attack"), "metric": "epsilon_lower",
                         "value": headline.get("epsilon_lower")})
            for fpr, rate in (headline.get("tpr_at_fpr") or {}).items():
                rows.append({**base, "scope": "headline", "attack": rate.get("attack"), "metric": "tpr_at_fpr", "fpr": fpr,
                             "value": rate.get("value"), "ci_low": rate.get("low"), "ci_high": rate.get("high"),
                             "reliable": rate.get("reliable")})
        for attack in run.get("attacks") or []:
            counts = {"n_members": attack.get("n_members"), "n_nonmembers": attack.get("n_nonmembers")}
            for metric in ("auc", "advantage", "balanced_accuracy", "epsilon_lower"):
                rows.append({**base, **counts, "scope": "attack", "attack": attack["name"], "metric": metric,
                             "value": attack.get(metric)})
            for fpr, rate in (attack.get("tpr_at_fpr") or {}).items():
                rows.append({**base, **counts, "scope": "attack", "attack": attack["name"], "metric": "tpr_at_fpr",
                             "fpr": fpr, "value": rate.get("value"), "ci_low": rate.get("low"),
                             "ci_high": rate.get("high"), "reliable": rate.get("reliable")})
        for key, value in (run.get("accuracy") or {}).items():
            rows.append({**base, "scope": "model", "metric": f"accuracy_{key}", "value": value})
        for row in run.get("what_if") or []:
            what = {"run_id": run["id"], "scope": "what_if", "output_policy": row.get("policy")}
            for fpr, value in (row.get("tpr_at_fpr") or {}).items():
                rows.append({**what, "attack": row.get("tpr_attack"), "metric": "tpr_at_fpr", "fpr": fpr, "value": value})
            rows.append({**what, "attack": row.get("auc_attack"), "metric": "auc", "value": row.get("auc")})
            for metric in ("accuracy", "train_accuracy", "accuracy_drop"):
                rows.append({**what, "metric": metric, "value": row.get(metric)})
    return rows


def _roc_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        for attack in run.get("attacks") or []:
            roc = attack.get("roc") or {}
            for point, (fpr, tpr) in enumerate(zip(roc.get("fpr") or [], roc.get("tpr") or [], strict=False)):
                rows.append({"run_id": run["id"], "attack": attack["name"], "point": point, "fpr": fpr, "tpr": tpr})
    return rows


def _alert_rows(alerts: list[dict]) -> list[dict]:
    """One row per lifecycle event, the alert's fields repeated on each."""
    rows = []
    for alert in alerts:
        base = {"alert_id": alert["id"], "client_id": alert["client"], **{
            key: alert[key] for key in ALERT_COLUMNS if key in alert and key not in ("client_id",)}}
        for event in alert["events"] or [{}]:
            rows.append({**base, "event": event.get("kind"), "event_at": event.get("at"), "event_actor": event.get("actor"),
                         "event_note": event.get("note")})
    return rows


# --- the report ---------------------------------------------------------------------------------------

def _pct(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(rate: dict | None) -> str:
    if not rate or rate.get("low") is None:
        return "–"
    return f"[{_pct(rate['low'])}, {_pct(rate['high'])}]"


def _rate_cells(rates: dict | None) -> list[dict]:
    return [{"value": _pct((rates or {}).get(f, {}).get("value")), "interval": _interval((rates or {}).get(f)),
             "reliable": (rates or {}).get(f, {}).get("reliable")} for f in FPRS]


def _report_context(document: dict, log_lines: list[dict]) -> dict:
    runs = document["runs"]
    finished = [r for r in runs if r["status"] == "done"]
    main = finished[-1] if finished else (runs[-1] if runs else None)
    model = document["model"]
    context: dict[str, Any] = {
        "export": document["export"], "model": model, "policy": document["policy"], "chain": document["audit_log"],
        "software": document["software"], "controls": _control_status(document, main),
        "fpr_labels": ["0.1 %", "1 %", "10 %"], "run": None, "runs": [_run_row(r) for r in runs],
        "alerts": [_alert_view(a) for a in document["alerts"]],
        "log_rows": [_log_view(line) for line in log_lines[-MAX_LOG_ROWS_IN_REPORT:]],
        "log_hidden": max(0, len(log_lines) - MAX_LOG_ROWS_IN_REPORT),
        "log_actions": _count_by(log_lines, "action"),
        "trend_svg": _trend_svg(finished, document["policy"]) if len(finished) > 1 else None,
    }
    if main is not None:
        context["run"] = _run_view(main, model)
    return context


def _run_row(run: dict) -> dict:
    headline = run.get("headline") or {}
    rate = (headline.get("tpr_at_fpr") or {}).get("0.01") or {}
    verdict = run.get("policy") or {}
    return {"id": run["id"], "status": run["status"], "trigger": run["trigger"], "created_at": run["created_at"],
            "finished_at": run["finished_at"], "tpr": _pct(rate.get("value")), "interval": _interval(rate),
            "auc": _num(headline.get("auc")), "epsilon": _num(headline.get("epsilon_lower"), 2),
            "verdict": "" if run["status"] != "done" else ("within policy" if verdict.get("passed") else "breached"),
            "passed": verdict.get("passed"), "error": run.get("error")}


def _run_view(run: dict, model: dict) -> dict:
    headline = run.get("headline") or {}
    config = run.get("config") or {}
    attack_config = run.get("attack_config") or {}
    attacks = run.get("attacks") or []
    leader = ((headline.get("tpr_at_fpr") or {}).get("0.01") or {}).get("attack")
    lead = next((a for a in attacks if a["name"] == leader), attacks[0] if attacks else None)
    classes = model.get("class_labels") or []
    verdict = run.get("policy") or {}
    return {
        "id": run["id"], "status": run["status"], "trigger": run["trigger"], "error": run.get("error"),
        "requested_by": run.get("requested_by"), "created_at": run["created_at"], "started_at": run["started_at"],
        "finished_at": run["finished_at"], "model_version": run.get("model_version"),
        "artifact_sha256": run.get("artifact_sha256"), "data_sha256": sorted((run.get("data_sha256") or {}).items()),
        "config": config, "attack_config": attack_config, "environment": run.get("environment") or {},
        "limits": config.get("limits") or {},
        "verdict": {"passed": verdict.get("passed"), "regression": verdict.get("regression"),
                    "breaches": [{"metric": b["metric"], "value": _num(b["value"], 4), "limit": _num(b["limit"], 4),
                                  "attack": b.get("attack")} for b in verdict.get("breaches") or []]},
        "headline": {
            "rates": [{"fpr": label, **cell, "attack": (headline.get("tpr_at_fpr") or {}).get(f, {}).get("attack")}
                      for label, f, cell in zip(["0.1 %", "1 %", "10 %"], FPRS, _rate_cells(headline.get("tpr_at_fpr")),
                                                strict=True)],
            "auc": _num(headline.get("auc")), "auc_attack": headline.get("auc_attack"),
            "epsilon": _num(headline.get("epsilon_lower"), 2), "epsilon_attack": headline.get("epsilon_attack"),
        } if headline else None,
        "attacks": [{"name": a["name"], "label": ATTACK_LABELS.get(a["name"], a["name"]), "auc": _num(a.get("auc")),
                     "advantage": _num(a.get("advantage")), "balanced_accuracy": _num(a.get("balanced_accuracy")),
                     "epsilon": _num(a.get("epsilon_lower"), 2), "rates": _rate_cells(a.get("tpr_at_fpr")),
                     "n": f"{a.get('n_members')} / {a.get('n_nonmembers')}", "note": ATTACK_NOTES.get(a["name"], ""),
                     "parameters": _attack_parameters(a, attack_config)} for a in attacks],
        "counts": sorted({(a.get("n_members"), a.get("n_nonmembers")) for a in attacks}, key=str),
        "roc_svg": _roc_svg(attacks) if attacks else None,
        "what_if": [{"policy": w.get("policy"), "current": w.get("policy") == config.get("output_policy"),
                     "accuracy": _num(w.get("accuracy")), "drop": _num(w.get("accuracy_drop")),
                     "tpr": _pct((w.get("tpr_at_fpr") or {}).get("0.01")), "tpr_attack": w.get("tpr_attack"),
                     "auc": _num(w.get("auc"))} for w in run.get("what_if") or []],
        "per_class": {"attack": ATTACK_LABELS.get(lead["name"], lead["name"]), "rows": [
            {"label": classes[s["label"]] if isinstance(s.get("label"), int) and s["label"] < len(classes) else s.get("label"),
             "n_members": s.get("n_members"), "n_nonmembers": s.get("n_nonmembers"), "auc": _num(s.get("auc")),
             "tpr": _pct(((s.get("tpr_at_fpr") or {}).get("0.01") or {}).get("value"))}
            for s in lead.get("per_class") or []]} if lead else None,
        "exposed": {"attack": lead["name"], "ids": lead.get("top_exposed") or []} if lead else None,
        "recommendations": run.get("recommendations") or [], "notes": run.get("notes") or [],
        "accuracy": run.get("accuracy") or {},
    }


def _attack_parameters(attack: dict, attack_config: dict) -> str:
    name = attack["name"]
    details = attack.get("details") or {}
    if name.startswith("lira"):
        return (f"{details.get('n_out_models', attack_config.get('n_reference'))} reference models, "
                f"variance {details.get('variance', attack_config.get('lira_variance'))}, clip {details.get('clip', attack_config.get('clip'))}")
    if name == "rmia":
        return (f"γ = {details.get('gamma')}, a = {details.get('a')}, {details.get('n_population_z')} population samples z, "
                f"{attack_config.get('n_reference')} reference models")
    if name == "label_only":
        label = attack_config.get("label_only") or {}
        return f"{label.get('n_neighbours')} neighbours per record at radii {label.get('radii')}"
    return "no reference models"


def _control_status(document: dict, main: dict | None) -> list[dict]:
    alerts = document["alerts"]
    handled = sum(1 for a in alerts if a["status"] in ("acknowledged", "resolved", "muted"))
    if main is None:
        tested = "No audit run in the period."
    elif main["status"] != "done":
        tested = f"Audit {main['id']} {main['status']}."
    else:
        tested = f"Audit {main['id']}: {'within policy' if (main.get('policy') or {}).get('passed') else 'policy breached'}."
    alert_text = f"{len(alerts)} alert(s) in the period, {handled} acknowledged, resolved or muted."
    status = {"OWASP ML04:2023": tested, "NIST AI RMF MEASURE 2.10": tested,
              "EU AI Act Art. 15(5)": f"{tested} {alert_text}", "SOC 2 CC7.2": f"{len(document['runs'])} audit run(s). {alert_text}",
              "SOC 2 CC7.3": alert_text, "SOC 2 CC7.4": alert_text}
    return [{**control, "status": status[control["id"]]} for control in CONTROLS]


def _alert_view(alert: dict) -> dict:
    return {**alert, "evidence_lines": [f"{key}: {_short(value)}" for key, value in list((alert.get("evidence") or {}).items())[:12]]}


def _short(value: Any, *, depth: int = 0) -> str:
    """Evidence for people: 4 significant digits, long lists cut, nested objects on one line."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v, depth=depth + 1)}" for k, v in list(value.items())[:8])
        return f"({text})" if depth else text
    if isinstance(value, list):
        shown = ", ".join(_short(v, depth=depth + 1) for v in value[:12])
        return shown + (f" … (+{len(value) - 12})" if len(value) > 12 else "")
    return str(value)[:200]


def _log_view(line: dict) -> dict:
    return {"seq": line["seq"], "at": line["at"], "actor": line["actor"], "action": line["action"],
            "object": f"{line['object_type']}:{line['object_id']}" if line["object_type"] else "",
            "hash": line["hash"][:16]}


def _count_by(lines: list[dict], key: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line[key]] = counts.get(line[key], 0) + 1
    return sorted(counts.items())


def _svg_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure_style() -> dict:
    return {"svg.fonttype": "none", "svg.hashsalt": "evidence", "font.family": "DejaVu Sans", "font.size": 9,
            "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb",
            "grid.linewidth": 0.6}


PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"]


def _roc_svg(attacks: list[dict]) -> str:
    """ROC per attack, log–log (the low-FPR region that matters) beside linear; static SVG from matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from audits.charts import ROC_FLOOR

    with matplotlib.rc_context(_figure_style()):
        figure = Figure(figsize=(10, 4.4))
        log_axes, linear_axes = figure.subplots(1, 2)
        for index, attack in enumerate(attacks):
            roc = attack.get("roc") or {}
            fpr, tpr = roc.get("fpr") or [], roc.get("tpr") or []
            if not fpr:
                continue
            color = PALETTE[index % len(PALETTE)]
            label = f"{attack['name']} (AUC {attack.get('auc') or 0:.3f})"
            log_axes.plot([max(f, ROC_FLOOR) for f in fpr], [max(t, ROC_FLOOR) for t in tpr], color=color, lw=1.4,
                          label=label)
            linear_axes.plot(fpr, tpr, color=color, lw=1.4, label=label)
        for axes, floor in ((log_axes, ROC_FLOOR), (linear_axes, 0.0)):
            axes.plot([floor, 1], [floor, 1], color="#9ca3af", ls=":", lw=1, label="chance")
            axes.set_xlabel("false positive rate")
            axes.set_ylabel("true positive rate")
        log_axes.set_xscale("log")
        log_axes.set_yscale("log")
        log_axes.set_xlim(ROC_FLOOR, 1)
        log_axes.set_ylim(ROC_FLOOR, 1)
        for fpr in (0.001, 0.01, 0.1):
            log_axes.axvline(fpr, color="#6b7280", lw=0.6, ls="--")
        log_axes.set_title("log–log: low false-positive rates", fontsize=9.5)
        linear_axes.set_xlim(0, 1)
        linear_axes.set_ylim(0, 1)
        linear_axes.set_title("linear", fontsize=9.5)
        linear_axes.legend(loc="lower right", fontsize=7.5, frameon=False)
        figure.tight_layout()
        return _svg_data_uri(figure)


def _trend_svg(runs: list[dict], policy: dict) -> str:
    """TPR at 1 % FPR over the period's finished runs, with 95 % intervals and the policy limit."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    points = []
    for run in runs:
        rate = ((run.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
        if rate.get("value") is not None:
            points.append((run["id"], rate["value"], rate.get("low") or rate["value"], rate.get("high") or rate["value"]))
    with matplotlib.rc_context(_figure_style()):
        figure = Figure(figsize=(10, 3))
        axes = figure.subplots()
        x = list(range(len(points)))
        axes.errorbar(x, [p[1] * 100 for p in points], yerr=[[(p[1] - p[2]) * 100 for p in points],
                                                               [(p[3] - p[1]) * 100 for p in points]],
                      fmt="o-", color=PALETTE[0], capsize=3, lw=1.2, label="TPR at 1 % FPR (95 % interval)")
        limit = (policy.get("limits") or {}).get("tpr_at_1pct_fpr")
        if limit is not None:
            axes.axhline(limit * 100, color=PALETTE[1], ls="--", lw=1, label="policy limit")
        axes.set_xticks(x, [f"audit {p[0]}" for p in points])
        axes.set_xlim(-0.5, len(points) - 0.5)
        axes.set_ylabel("TPR at 1 % FPR (%)")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7.5, frameon=False)
        figure.tight_layout()
        return _svg_data_uri(figure)


def _pdf(html: str) -> bytes:
    # WeasyPrint logs every layout step at INFO; one export would put a dozen lines in the worker's log.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # The figures are data: URIs; nothing else may be fetched, from the network or the disk.
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=["data"])).write_pdf()


def _readme(meta: dict) -> str:
    return f"""Membership-inference audit evidence — bundle {meta['export_id']}
Model audit evidence exported {_iso(meta['exported_at'])} by {meta['exported_by']}.

Files
  report.pdf, report.html  the report for people
  audit.json               everything needed to reproduce and judge the audit runs
  metrics.csv, roc.csv     the figures, one value per row
  alerts.csv               the model's alerts in the period, one row per lifecycle event
  audit_log.jsonl          the hash-chained audit-log entries of the period, ending with this export
  MANIFEST.json            SHA-256 and size of every file above
  MANIFEST.sig             Ed25519 signature over the exact bytes of MANIFEST.json (64 raw bytes)
  public_key.pem           the public key (SHA-256 of the raw key: {meta['public_key_sha256']})

Verify
  python manage.py verify_evidence THIS.zip --public-key KEY_YOU_TRUST.pem
or by hand:
  openssl pkeyutl -verify -pubin -inkey KEY_YOU_TRUST.pem -rawin -in MANIFEST.json -sigfile MANIFEST.sig
  sha256sum each file and compare with MANIFEST.json
  each audit_log.jsonl line: sha256(prev_hash + payload) == hash, prev_hash == the previous line's hash,
  the first line's prev_hash == MANIFEST.json audit_log.anchor_prev_hash.
Use a public key obtained from the organisation, not only the one inside the bundle.
"""


# --- verifying ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    item: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'OK' if self.ok else 'FAIL':<4}  {self.item}: {self.message}"


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]

    def add(self, item: str, ok: bool, message: str) -> bool:
        self.checks.append(Check(item, ok, message))
        return ok


def verify_bundle(data: bytes, *, public_key_pem: bytes | None = None) -> VerifyReport:
    """Check a bundle: the manifest's signature, every file's hash and size, missing and extra files,
    the audit-log chain segment, and (when given) that the embedded public key is the trusted one.

    Without `public_key_pem` the embedded key is used, which proves integrity but not origin.
    """
    report = VerifyReport()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [info.filename for info in archive.infolist()]
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        report.add("bundle", False, f"not a readable ZIP file ({exc})")
        return report
    duplicates = sorted({name for name in names if names.count(name) > 1})
    report.add("bundle", not duplicates, f"{len(names)} files" if not duplicates else
               f"{', '.join(duplicates)} appear(s) more than once in the ZIP")
    infos = {info.filename: info for info in archive.infolist()}

    if MANIFEST not in infos:
        report.add(MANIFEST, False, "missing from the bundle")
        return report
    manifest_bytes = _read(archive, infos, MANIFEST, limit=MAX_MANIFEST_BYTES)
    if manifest_bytes is None:
        report.add(MANIFEST, False, f"unreadable or larger than {MAX_MANIFEST_BYTES} bytes")
        return report
    try:
        manifest = json.loads(manifest_bytes)
        listed = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        report.add(MANIFEST, False, f"not a valid manifest ({exc})")
        return report

    embedded = _public_key(_read(archive, infos, PUBLIC_KEY, limit=64 * 2**10))
    if embedded is None:
        report.add(PUBLIC_KEY, False, "missing or not an Ed25519 public key in PEM")
    trusted = embedded
    if public_key_pem is not None:
        given = _public_key(public_key_pem)
        if given is None:
            report.add("public key", False, "the given public key is not an Ed25519 public key in PEM")
            return report
        trusted = given
        if embedded is not None:
            same = key_fingerprint(embedded) == key_fingerprint(given)
            report.add(PUBLIC_KEY, same, "is the given public key" if same else
                       f"is not the given public key (bundle key {key_fingerprint(embedded)[:16]}…, "
                       f"given {key_fingerprint(given)[:16]}…)")
    _check_signature(report, _read(archive, infos, SIGNATURE, limit=2**10), manifest_bytes, trusted,
                     given=public_key_pem is not None)

    for name in sorted(listed):
        _check_file(report, archive, infos, name, listed[name])
    for name in REQUIRED_FILES:
        if name not in listed:
            report.add(name, False, "required file not listed in MANIFEST.json")
    extra = sorted(set(infos) - set(listed) - {MANIFEST, SIGNATURE})
    for name in extra:
        report.add(name, False, "extra file, not listed in MANIFEST.json")
    if not extra:
        report.add("extra files", True, "none: every file in the ZIP is listed in MANIFEST.json")

    log_entry = listed.get("audit_log.jsonl")
    log_bytes = _read(archive, infos, "audit_log.jsonl", limit=log_entry.get("size") if isinstance(log_entry, dict) else 0)
    if log_bytes is not None:
        _check_chain(report, log_bytes, manifest)
    return report


def _read(archive: zipfile.ZipFile, infos: dict, name: str, *, limit: Any = None) -> bytes | None:
    info = infos.get(name)
    if info is None:
        return None
    # The declared size is checked before reading, and reading stops at it: ZipFile.read would inflate the
    # whole member in one call, however small its declared size, before cutting it to that size.
    if isinstance(limit, int) and info.file_size > limit or info.compress_type not in SAFE_COMPRESSION:
        return None
    try:
        with archive.open(info) as member:
            return member.read(info.file_size)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError):
        return None  # damaged, encrypted or in an unsupported compression: the caller names the file


def _digest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, int] | None:
    """SHA-256 and size of a member, inflated 1 MiB at a time and never held whole (a bundle may be hostile)."""
    if info.compress_type not in SAFE_COMPRESSION:
        return None  # bzip2 and LZMA inflate a whole read at once, with no bound; we never write them
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(2**20):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError):
        return None
    return digest.hexdigest(), size


def _public_key(pem: bytes | None) -> Ed25519PublicKey | None:
    if not pem:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def _check_signature(report: VerifyReport, signature: bytes | None, manifest_bytes: bytes,
                     key: Ed25519PublicKey | None, *, given: bool) -> None:
    whose = "the given public key" if given else "the bundle's own public key (origin not proven: pass a trusted key)"
    if signature is None:
        report.add(SIGNATURE, False, "missing from the bundle")
    elif key is None:
        report.add(SIGNATURE, False, "cannot be checked: no usable public key")
    else:
        try:
            key.verify(signature, manifest_bytes)
            report.add(SIGNATURE, True, f"valid Ed25519 signature of {MANIFEST} by {whose}")
        except InvalidSignature:
            report.add(SIGNATURE, False, f"not a valid signature of {MANIFEST} by {whose}: {MANIFEST} was changed "
                                         "or signed with another key")


def _check_file(report: VerifyReport, archive: zipfile.ZipFile, infos: dict, name: str, expected: Any) -> None:
    if not isinstance(expected, dict) or "sha256" not in expected or "size" not in expected:
        report.add(name, False, "its MANIFEST.json entry has no sha256 and size")
        return
    info = infos.get(name)
    if info is None:
        report.add(name, False, "missing from the bundle (listed in MANIFEST.json)")
        return
    if info.file_size != expected["size"]:
        report.add(name, False, f"size {info.file_size} bytes, MANIFEST.json says {expected['size']}")
        return
    read = _digest(archive, info)
    if read is None:
        report.add(name, False, "cannot be read from the ZIP (damaged)")
        return
    digest, size = read
    if digest != expected["sha256"]:
        report.add(name, False, f"SHA-256 {digest[:16]}… does not match MANIFEST.json ({str(expected['sha256'])[:16]}…): "
                                "the file was changed")
        return
    report.add(name, True, f"SHA-256 and size ({size} bytes) match")


def _check_chain(report: VerifyReport, log_bytes: bytes, manifest: dict) -> None:
    item = "audit_log.jsonl chain"
    segment: dict = manifest["audit_log"] if isinstance(manifest.get("audit_log"), dict) else {}
    lines: list[dict] = []
    for number, raw in enumerate(log_bytes.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            report.add(item, False, f"line {number} is not a JSON object ({exc})")
            return
        line["_line"] = number
        lines.append(line)
    if not lines:
        report.add(item, False, "no entries")
        return
    ok, message = _verify_segment(lines, anchor=segment.get("anchor_prev_hash"))
    problems = [] if ok else message.split("\n")
    first, last = lines[0], lines[-1]
    if segment.get("first_seq") != first.get("seq") or segment.get("last_seq") != last.get("seq"):
        problems.append(f"entries #{first.get('seq')}–#{last.get('seq')}, MANIFEST.json says "
                        f"#{segment.get('first_seq')}–#{segment.get('last_seq')}")
    if segment.get("count") is not None and segment.get("count") != len(lines):
        problems.append(f"{len(lines)} entries, MANIFEST.json says {segment.get('count')}")
    export_after = last["after"] if isinstance(last.get("after"), dict) else {}
    if last.get("action") != "evidence.exported" or export_after.get("export_id") != manifest.get("export_id"):
        problems.append(f"the last entry (#{last.get('seq')}, line {last['_line']}) is not this export's "
                        f"evidence.exported entry")
    if segment.get("head_hash") is not None and segment.get("head_hash") != last.get("hash"):
        problems.append(f"the last entry's hash is not the head hash in MANIFEST.json (entry #{last.get('seq')})")
    for problem in problems[:MAX_CHAIN_FAILURES]:
        report.add(item, False, problem)
    if len(problems) > MAX_CHAIN_FAILURES:
        report.add(item, False, f"… and {len(problems) - MAX_CHAIN_FAILURES} more")
    if not problems:
        report.add(item, True, f"{message}; ends with this export (#{last['seq']})")


def _verify_segment(lines: list[dict], *, anchor: str | None) -> tuple[bool, str]:
    """Each line's payload matches its fields and its hash, links to the previous line, and the first to
    the anchor. (False, one problem per line, naming the entry) or (True, summary)."""
    problems = []
    previous_hash, previous_seq = anchor, None
    for index, line in enumerate(lines, start=1):
        where = f"line {line.get('_line', index)} (entry #{line.get('seq')})"
        payload = line.get("payload")
        fields = {key: line.get(key) for key in PAYLOAD_KEYS}
        if not isinstance(payload, str) or not isinstance(line.get("prev_hash"), str):
            problems.append(f"{where}: no payload or prev_hash")
            previous_hash, previous_seq = line.get("hash"), line.get("seq")
            continue
        if not isinstance(line.get("seq"), int) or isinstance(line.get("seq"), bool):
            problems.append(f"{where}: seq is not a whole number")
            previous_hash, previous_seq = line.get("hash"), None
            continue
        if previous_seq is not None and line["seq"] != previous_seq + 1:
            problems.append(f"{where}: follows entry #{previous_seq}; entries are missing or out of order")
        if line["prev_hash"] != previous_hash:
            target = "the segment's anchor (the hash of the entry before it)" if previous_seq is None else \
                f"the hash of entry #{previous_seq}"
            problems.append(f"{where}: prev_hash does not match {target}")
        if canonical_json(fields) != payload:
            problems.append(f"{where}: its fields differ from the payload the hash covers (edited)")
        if hashlib.sha256((line["prev_hash"] + payload).encode()).hexdigest() != line.get("hash"):
            problems.append(f"{where}: its payload does not match its hash (edited after it was written)")
        previous_hash, previous_seq = line.get("hash"), line.get("seq")
    if problems:
        return False, "\n".join(problems)
    return True, f"{len(lines)} entries #{lines[0].get('seq')}–#{lines[-1].get('seq')}, chain intact from its anchor"
