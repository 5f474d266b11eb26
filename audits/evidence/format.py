"""The evidence bundle's format: its files, the CSV tables and their formula escaping, the JSON encoding and the
deterministic ZIP. Pure (stdlib and cryptography): the builder writes bundles with it, an auditor's verifier reads them.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

# The key id is defined with the chain, whose signed heads carry the same one.
from monitor.trail.chain import key_fingerprint as key_fingerprint
from monitor.trail.chain import key_id as key_id

FORMAT_1 = "mi-monitor-evidence/1"  # before the controls annex
FORMAT = "mi-monitor-evidence/2"
MANIFEST, SIGNATURE, PUBLIC_KEY = "MANIFEST.json", "MANIFEST.sig", "public_key.pem"
# The latest signed head of the trail when the bundle was built (absent before the first one is signed).
TRAIL_HEAD = "trail_head.json"
# The controls annex (audits.evidence.annex), the gate candidates it reads, and the framework mapping files as
# shipped, each under CONTROLS_DIR by its own name.
CONTROLS_JSON, CONTROLS_CSV, CANDIDATES_JSON = "controls.json", "controls.csv", "candidates.json"
CONTROLS_DIR = "controls/"
CONTROLS_FORMAT = "mi-monitor-controls/1"
REQUIRED_FILES_1 = ("report.pdf", "report.html", "audit.json", "metrics.csv", "roc.csv", "alerts.csv",
                    "audit_log.jsonl", PUBLIC_KEY)
REQUIRED_FILES = (*REQUIRED_FILES_1, CONTROLS_JSON, CONTROLS_CSV, CANDIDATES_JSON)
# What a bundle of each format must hold (MANIFEST.json names its format): a bundle made before the annex still
# verifies; one of an unknown format is held to the newest list.
REQUIRED_BY_FORMAT = {FORMAT_1: REQUIRED_FILES_1, FORMAT: REQUIRED_FILES}
FPRS = ("0.001", "0.01", "0.1")
# The fields of an audit-log entry its hash covers (TrailEntry.payload()).
PAYLOAD_KEYS = ("seq", "at", "actor", "ip", "action", "object_type", "object_id", "before", "after")
# An entry about another model or user, kept only as a link of the chain: enough to check the chain runs unbroken
# through it, nothing of what it says.
LINK_KEYS = ("seq", "prev_hash", "hash")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"; NUL from
# ASVS 5.0 1.2.10: an importer that drops a leading NUL would see the formula behind it).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\x00")
# Alert evidence holds counts, scores and ids by design; keys that could carry a record's content are
# dropped anyway, so that a future detector cannot put member values into a bundle by accident.
EVIDENCE_DENY_KEYS = frozenset({"features", "feature_values", "values", "x", "X", "record", "records", "row", "rows",
                                "point", "points", "centre", "center", "output", "outputs", "inputs"})
MAX_CHAIN_FAILURES = 20
MAX_MANIFEST_BYTES = 16 * 2**20
SAFE_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what zip_bundle writes; both read in bounded steps

METRICS_COLUMNS = ["run_id", "scope", "output_policy", "attack", "metric", "fpr", "value", "ci_low", "ci_high",
                   "reliable", "n_members", "n_nonmembers"]
ROC_COLUMNS = ["run_id", "attack", "point", "fpr", "tpr"]
CONTROL_COLUMNS = ["framework", "text_version", "mapping_version", "control", "clause", "title", "status", "checks",
                   "evidence"]
# Every row of controls.json has these fields; its checks each have CHECK_FIELDS.
CONTROL_ROW_FIELDS = ("framework", "framework_file", "control", "clause", "title", "status", "checks")
CHECK_FIELDS = ("name", "status", "evidence")
ALERT_COLUMNS = ["alert_id", "fingerprint", "source", "kind", "title", "client_id", "severity", "status", "first_seen",
                 "last_seen", "occurrences", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at",
                 "muted_until", "mute_reason", "event", "event_at", "event_actor", "event_note"]


class ControlStatus(StrEnum):
    """A control's status in the annex, and each evidence check's."""

    MET = "met"
    NOT_MET = "not met"
    NOT_MEASURED = "not measured"  # no evidence decides it (no audit, no calibration, no DP-trained artifact)
    NOT_APPLICABLE = "not applicable"  # nothing happened that the control is about (no candidate, no deployment)

    @property
    def rank(self) -> int:
        """A control's status is its worst check's: not met, then not measured, then met, then not applicable."""
        return CONTROL_RANK[self]


CONTROL_RANK = {ControlStatus.NOT_APPLICABLE: 0, ControlStatus.MET: 1, ControlStatus.NOT_MEASURED: 2,
                ControlStatus.NOT_MET: 3}


class EvidenceError(ValueError):
    """A bundle that cannot be built, stated for the person who asked for it."""


class EvidencePeriodError(EvidenceError):
    """A period that is not exported, naming the field (start or end) to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


# --- JSON ------------------------------------------------------------------------------------------------

def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def json_bytes(value: Any) -> bytes:
    """audit.json: indented for people, datetimes as ISO 8601."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default).encode() + b"\n"


def jsonl_bytes(lines: list[dict]) -> bytes:
    """audit_log.jsonl: one entry a line, keys sorted."""
    return "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines).encode()


def manifest_bytes(manifest: dict) -> bytes:
    """MANIFEST.json, the exact bytes the signature covers."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


# --- CSV -------------------------------------------------------------------------------------------------

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


def csv_bytes(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode()


def metrics_rows(runs: list[dict]) -> list[dict]:
    """metrics.csv: every figure of every run (headline, per attack, accuracy, what-if), one value a row."""
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


def roc_rows(runs: list[dict]) -> list[dict]:
    """roc.csv: every ROC point of every attack."""
    rows = []
    for run in runs:
        for attack in run.get("attacks") or []:
            roc = attack.get("roc") or {}
            for point, (fpr, tpr) in enumerate(zip(roc.get("fpr") or [], roc.get("tpr") or [], strict=False)):
                rows.append({"run_id": run["id"], "attack": attack["name"], "point": point, "fpr": fpr, "tpr": tpr})
    return rows


def alert_rows(alerts: list[dict]) -> list[dict]:
    """alerts.csv: one row per lifecycle event, the alert's fields repeated on each."""
    rows = []
    for alert in alerts:
        base = {"alert_id": alert["id"], "client_id": alert["client"], **{
            key: alert[key] for key in ALERT_COLUMNS if key in alert and key not in ("client_id",)}}
        for event in alert["events"] or [{}]:
            rows.append({**base, "event": event.get("kind"), "event_at": event.get("at"), "event_actor": event.get("actor"),
                         "event_note": event.get("note")})
    return rows


def control_rows(annex: dict) -> list[dict]:
    """controls.csv: one row per control of every framework, its checks' evidence in one cell."""
    frameworks = {f["id"]: f for f in annex["frameworks"]}
    return [{"framework": frameworks[row["framework"]]["name"],
             "text_version": frameworks[row["framework"]]["text_version"],
             "mapping_version": frameworks[row["framework"]]["mapping_version"],
             "control": row["control"], "clause": row["clause"], "title": row["title"], "status": row["status"],
             "checks": "; ".join(f"{c['name']}: {c['status']}" for c in row["checks"]),
             "evidence": " ".join(c["evidence"] for c in row["checks"])} for row in annex["rows"]]


# --- ZIP -------------------------------------------------------------------------------------------------

def zip_bundle(files: dict[str, bytes], *, when: datetime) -> bytes:
    """The ZIP, byte for byte the same for the same files and time: manifest and signature first, then by name,
    every member stamped `when` (the PDF stored, being compressed already)."""
    stamp = when.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files, key=lambda n: (n not in (MANIFEST, SIGNATURE), n)):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".pdf") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()
