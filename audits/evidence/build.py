"""Building an evidence bundle: check the period, log the export, gather what goes in, map it to the frameworks'
controls (the annex is computed from audit.json and candidates.json as written, so it says what the bundle says),
write every file, hash them into the manifest, sign it, and zip. The export is in the audit log before the segment
is cut, so the bundle ends with itself."""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from audits.evidence import gather
from audits.evidence.annex import build_annex, load_frameworks
from audits.evidence.checks import Facts
from audits.evidence.format import (
    ALERT_COLUMNS,
    CANDIDATES_JSON,
    CONTROL_COLUMNS,
    CONTROLS_CSV,
    CONTROLS_JSON,
    FORMAT,
    MANIFEST,
    METRICS_COLUMNS,
    PUBLIC_KEY,
    ROC_COLUMNS,
    SIGNATURE,
    TRAIL_HEAD,
    EvidenceError,
    EvidencePeriodError,
    alert_rows,
    control_rows,
    csv_bytes,
    iso,
    json_bytes,
    jsonl_bytes,
    key_fingerprint,
    manifest_bytes,
    metrics_rows,
    roc_rows,
    zip_bundle,
)
from audits.evidence.keys import public_key_id, public_key_pem, signing_key
from audits.evidence.report import report_html, report_pdf
from audits.evidence.verify import check_segment
from audits.models import AuditRun, RunStatus
from monitor.models import RegisteredModel
from monitor.trail.models import TrailEntry

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def build_run_bundle(run: AuditRun, *, exported_by: AbstractBaseUser | None = None) -> bytes:
    """The bundle for one finished (or failed) audit run; its period runs from the request to the export."""
    run = AuditRun.objects.select_related("model", "requested_by").get(pk=run.pk)  # the stored run, not a copy
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        raise EvidenceError(f"audit {run.pk} is {run.status}; export it when it has finished")
    return _export(kind="run", model=run.model, runs=[run], start=run.created_at, end=None, subject=run,
                   exported_by=exported_by, versions=(run.model_version,))


def build_period_bundle(*, model: RegisteredModel, start: datetime, end: datetime,
                        exported_by: AbstractBaseUser | None = None) -> bytes:
    """The bundle for every audit run of `model` requested in [start, end), the latest finished one in detail."""
    check_period(model=model, start=start, end=end)
    runs = list(AuditRun.objects.filter(model=model, created_at__gte=start, created_at__lt=end)
                .select_related("model", "requested_by").order_by("created_at"))
    return _export(kind="period", model=model, runs=runs, start=start, end=end, subject=model, exported_by=exported_by)


def check_period(*, model: RegisteredModel, start: datetime, end: datetime) -> None:
    """EvidencePeriodError naming the field to change, before anything is built. The trail segment runs from `start`
    to the export, so `start` may not precede the day the model was registered, and the period is at most
    EVIDENCE_MAX_PERIOD_DAYS long: no web request reads the trail from its beginning."""
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise EvidencePeriodError("start", "start and end need a time zone")
    if start >= end:
        raise EvidencePeriodError("end", f"the period is empty: {start.isoformat()} is not before {end.isoformat()}")
    registered_day = timezone.localtime(model.created_at).replace(hour=0, minute=0, second=0, microsecond=0)
    if start < registered_day:
        raise EvidencePeriodError("start", f"{start.isoformat()} is before the model was registered "
                                           f"({model.created_at.isoformat()}); start on {registered_day.date()} or later")
    limit = settings.EVIDENCE_MAX_PERIOD_DAYS
    if end - start > timedelta(days=limit):
        raise EvidencePeriodError("end", f"the period is {(end - start).days} days long; a bundle covers at most "
                                         f"{limit} days (EVIDENCE_MAX_PERIOD_DAYS): end by "
                                         f"{(start + timedelta(days=limit)).isoformat()}, or export several bundles")


def _export(*, kind: str, model: RegisteredModel, runs: list[AuditRun], start: datetime, end: datetime | None,
            subject: AuditRun | RegisteredModel, exported_by: AbstractBaseUser | None,
            versions: tuple[int, ...] = ()) -> bytes:
    export_id = uuid.uuid4().hex
    # An anonymous user's name is "": the export is then the system's, as the audit log records it.
    exporter = (exported_by.get_username() if exported_by else None) or "system"
    # Logged first, so the segment cut below ends with the export itself.
    entry = TrailEntry.record(action="evidence.exported", actor=exported_by, obj=subject, after={
        "export_id": export_id, "kind": kind, "model": model.slug, "runs": [r.pk for r in runs],
        "period": {"start": start, "end": end}, "format": FORMAT,
    })
    exported_at = entry.at
    period_end = end or exported_at
    segment = gather.log_segment(model=model, start=start, last_seq=entry.seq)
    in_full = [line for line in segment["lines"] if "payload" in line]
    runs_data = [gather.run_data(run) for run in runs]
    alerts = gather.alerts_data(model=model, start=start, end=period_end)
    pem = public_key_pem()
    chain_ok, chain_message = check_segment(segment["lines"], anchor=segment["anchor_prev_hash"])
    meta = {
        "format": FORMAT, "export_id": export_id, "kind": kind, "exported_at": exported_at,
        "exported_by": exporter, "period": {"start": start, "end": period_end},
        "audit_log_entry": {"seq": entry.seq, "hash": entry.hash},
        "public_key_sha256": key_fingerprint(signing_key().public_key()), "public_key_id": public_key_id(),
    }
    chain = {"anchor_prev_hash": segment["anchor_prev_hash"], "first_seq": segment["first_seq"],
             "last_seq": segment["last_seq"], "count": len(segment["lines"]),
             "links": len(segment["lines"]) - len(in_full), "export_seq": entry.seq,
             "head_hash": entry.hash, "intact_at_export": chain_ok, "message": chain_message,
             "hash": "sha256(prev_hash + payload), payload = canonical JSON of seq, at, actor, ip, action, "
                     "object_type, object_id, before, after",
             "links_are": "entries about other models or people: seq, prev_hash and hash only, so the chain "
                          "verifies through them"}
    document = {
        "export": meta, "model": gather.model_data(model), "policy": gather.policy_data(model), "runs": runs_data,
        "alerts": alerts, "detection": gather.detection_data(model=model, start=start, end=period_end),
        "gateway": gather.gateway_data(model=model, start=start, end=period_end),
        "training": gather.training_data(model),
        "deployments": gather.deployments_data(model=model, start=start, end=period_end, versions=versions),
        "audit_log": chain, "software": gather.software(),
    }
    candidates = {"model": model.slug, "period": {"start": start, "end": period_end}, "versions": list(versions),
                  "candidates": gather.candidates_data(model=model, start=start, end=period_end, versions=versions)}
    files: dict[str, bytes] = {
        "audit.json": json_bytes(document),
        CANDIDATES_JSON: json_bytes(candidates),
        "metrics.csv": csv_bytes(METRICS_COLUMNS, metrics_rows(runs_data)),
        "roc.csv": csv_bytes(ROC_COLUMNS, roc_rows(runs_data)),
        "alerts.csv": csv_bytes(ALERT_COLUMNS, alert_rows(alerts)),
        "audit_log.jsonl": jsonl_bytes(segment["lines"]),
        PUBLIC_KEY: pem,
    }
    frameworks = load_frameworks()
    annex = build_annex(frameworks, Facts.from_bundle(json.loads(files["audit.json"]), json.loads(files[CANDIDATES_JSON])))
    files[CONTROLS_JSON] = json_bytes(annex)
    files[CONTROLS_CSV] = csv_bytes(CONTROL_COLUMNS, control_rows(annex))
    files.update({framework.file: framework.data for framework in frameworks})
    signed_head = gather.signed_head()
    if signed_head is not None:
        files[TRAIL_HEAD] = json_bytes(signed_head)
    html = report_html(document, in_full, annex=annex, candidates=candidates["candidates"])
    files["report.html"] = html.encode()
    files["report.pdf"] = report_pdf(html)
    files["README.txt"] = _readme(meta).encode()
    manifest = {
        "format": FORMAT, "export_id": export_id, "kind": kind, "model": model.slug, "runs": [r.pk for r in runs],
        "exported_at": iso(exported_at), "exported_by": exporter,
        "period": {"start": iso(start), "end": iso(period_end)},
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()},
        "audit_log": {key: chain[key] for key in ("anchor_prev_hash", "first_seq", "last_seq", "count", "export_seq",
                                                   "head_hash")},
        "signature": {"algorithm": "Ed25519", "file": SIGNATURE, "public_key": PUBLIC_KEY,
                      "public_key_sha256": meta["public_key_sha256"], "key_id": meta["public_key_id"]},
    }
    signed = manifest_bytes(manifest)
    signature = signing_key().sign(signed)
    return zip_bundle({**files, MANIFEST: signed, SIGNATURE: signature}, when=exported_at)


def _readme(meta: dict) -> str:
    return f"""Membership-inference audit evidence — bundle {meta['export_id']}
Model audit evidence exported {iso(meta['exported_at'])} by {meta['exported_by']}.

Files
  report.pdf, report.html  the report for people
  audit.json               everything needed to reproduce and judge the audit runs
  metrics.csv, roc.csv     the figures, one value per row
  alerts.csv               the model's alerts in the period, one row per lifecycle event
  controls.json, .csv      the controls annex: each framework's controls, their status (met, not met, not
                           measured, not applicable) and the evidence that decides it
  controls/*.json          the framework mapping files the annex was computed with (SHA-256 in controls.json)
  candidates.json          the privacy gate's candidates: verdicts, reasons, promotions and their written reasons
  audit_log.jsonl          the hash-chained audit-log entries of the period, ending with this export: those
                           about this model in full, every other one as a link (seq, prev_hash, hash only)
  MANIFEST.json            SHA-256 and size of every file above
  MANIFEST.sig             Ed25519 signature over the exact bytes of MANIFEST.json (64 raw bytes)
  public_key.pem           the public key (SHA-256 of the raw key: {meta['public_key_sha256']}; key id
                           {meta['public_key_id']}, the first 16 characters of it)
  trail_head.json          (once one is signed) the audit log's latest head signed with the same key: the
                           entry of that number in audit_log.jsonl must have that hash

Verify
  python manage.py verify_evidence THIS.zip --public-key KEY_YOU_TRUST.pem
or by hand:
  openssl pkeyutl -verify -pubin -inkey KEY_YOU_TRUST.pem -rawin -in MANIFEST.json -sigfile MANIFEST.sig
  sha256sum each file and compare with MANIFEST.json
  each audit_log.jsonl line: sha256(prev_hash + payload) == hash (links have no payload), prev_hash == the
  previous line's hash, the first line's prev_hash == MANIFEST.json audit_log.anchor_prev_hash.
Use a public key obtained from the organisation, not only the one inside the bundle: the one published under key
id {meta['public_key_id']} (MANIFEST.json signature.key_id).
"""
