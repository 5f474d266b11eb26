"""Scanning the query log with the detectors: calibrate on a reference window, then scan new queries
since the watermark in bounded chunks; findings are stored once per range and open or update alerts.

Member records are decrypted into memory for the training-proximity index and never written anywhere.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from monitor.alerts.lifecycle import Signal, raise_signal
from monitor.detection.detectors import ModelContext, QueryBatch, build_detectors, calibrate, scan
from monitor.ingestion.store import INGEST_LOCK_CLASS
from monitor.ingestion.vectors import decode_vectors
from monitor.models import DetectorFinding, DetectorState, QueryLog, RegisteredModel
from monitor.platform.crypto import data_fernet
from monitor.trail.chain import canonical_json

log = logging.getLogger(__name__)

TITLES = {
    "volume": "Query volume far above baseline",
    "near_duplicate_sweep": "Near-duplicate sweep around records (label-only attack pattern)",
    "boundary_probing": "Queries piling up at the decision boundary",
    "training_proximity": "Queries matching training records",
    "distribution_shift": "Queries unlike production traffic",
    "account_linking": "Same probing pattern across several accounts",
}
DETECTOR_QUIET_PERIOD = timedelta(hours=24)


class ScanError(RuntimeError):
    pass


def state_for(model: RegisteredModel, *, only_pk: bool = False) -> DetectorState:
    """The model's detector state, created (with a fresh fingerprint key) on first use. `only_pk` reads none of
    the large JSON fields (the carried state runs to megabytes)."""
    rows = DetectorState.objects.filter(model=model)
    state = (rows.only("pk") if only_pk else rows).first()
    if state is None:
        state, _ = DetectorState.objects.get_or_create(
            model=model, defaults={"fingerprint_key": data_fernet().encrypt(os.urandom(32))})
    return state


def _epoch_expression() -> str:
    if connection.vendor == "postgresql":
        return "EXTRACT(EPOCH FROM ts)::float8"
    return "(julianday(ts) - 2440587.5) * 86400.0"


def load_queries(model: RegisteredModel, *, after_id: int, upto_id: int, limit: int,
                 exclude_clients: tuple[str, ...] = ()) -> tuple[QueryBatch, int]:
    """Queries with after_id < id ≤ upto_id in id order, at most `limit`; returns the batch and its last id."""
    table = QueryLog._meta.db_table
    sql = (f"SELECT id, client_id, {_epoch_expression()}, features, outputs FROM {table} "  # noqa: S608  # nosec B608
           "WHERE model_id = %s AND id > %s AND id <= %s ORDER BY id LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [model.pk, after_id, upto_id, limit])
        rows = cursor.fetchall()
    if exclude_clients:
        rows = [row for row in rows if row[1] not in exclude_clients]
    d, k = model.n_features, len(model.class_labels)
    batch = QueryBatch(
        query_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        client_ids=np.array([r[1] for r in rows], dtype=str) if rows else np.empty(0, dtype=str),
        timestamps=np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
        features=decode_vectors([r[3] for r in rows], d),
        outputs=decode_vectors([r[4] for r in rows], k),
    )
    return batch, (rows[-1][0] if rows else after_id)


def safe_high_water(model: RegisteredModel) -> int:
    """The highest query id below which no ingestion transaction can still commit.

    Ids are drawn when rows are written, not when they commit: a scan that read max(id) while an
    older batch was still in flight would step over it for ever. On PostgreSQL each ingestion holds
    a shared advisory lock for its transaction; taking it exclusively here waits those out. SQLite
    has a single writer, so its committed max(id) is already safe.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INGEST_LOCK_CLASS, model.pk])
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {QueryLog._meta.db_table} WHERE model_id = %s",  # noqa: S608  # nosec B608
                           [model.pk])
            return int(cursor.fetchone()[0])


# A worker keeps the contexts of the models it scanned last (decrypted members, their index, the calibration), so
# a scan's fixed cost is paid once, not every minute; any change of calibration, key or member data replaces it.
CONTEXT_CACHE_SIZE = 8
_contexts: OrderedDict[int, tuple[tuple, ModelContext]] = OrderedDict()


def model_context(model: RegisteredModel, state: DetectorState) -> ModelContext:
    stats = state.calibration.get("_context")
    if not stats:
        raise ScanError(f"detectors for {model.slug} are not calibrated yet")
    members = model.datasets.filter(kind="members").only("pk", "sha256").first()
    key = (state.calibrated_at, hashlib.sha256(canonical_json(state.calibration).encode()).hexdigest(),
           bytes(state.fingerprint_key), members.pk if members else None, members.sha256 if members else None)
    cached = _contexts.get(model.pk)
    if cached is not None and cached[0] == key:
        _contexts.move_to_end(model.pk)
        return cached[1]
    arrays = model.datasets.get(pk=members.pk).load() if members is not None else None  # in memory only
    context = ModelContext(
        feature_means=np.asarray(stats["feature_means"]), feature_stds=np.asarray(stats["feature_stds"]),
        n_classes=len(model.class_labels), fingerprint_key=data_fernet().decrypt(bytes(state.fingerprint_key)),
        members=arrays.X if arrays is not None else None,
        member_ids=arrays.record_ids if arrays is not None else None,
        calibration={k: v for k, v in state.calibration.items() if k != "_context"},
    )
    _contexts[model.pk] = (key, context)
    while len(_contexts) > CONTEXT_CACHE_SIZE:
        _contexts.popitem(last=False)
    return context


def calibrate_model(model: RegisteredModel, *, from_id: int = 0, to_id: int | None = None,
                    exclude_clients: tuple[str, ...] = (), max_rows: int | None = None) -> DetectorState:
    """Calibrate every detector on a window of the model's own (benign) traffic.

    Pick a window without known attackers (`exclude_clients`); the thresholds it yields are stated
    as expected false-alarm rates per client-day in each detector's calibration.
    """
    state = state_for(model)
    upto = safe_high_water(model) if to_id is None else to_id
    reference, last_id = load_queries(model, after_id=from_id, upto_id=upto,
                                      limit=max_rows or settings.DETECTOR_CALIBRATION_ROWS, exclude_clients=exclude_clients)
    if len(reference) < settings.DETECTOR_MIN_CALIBRATION_ROWS:
        raise ScanError(f"{len(reference)} reference queries for {model.slug}; calibration needs at least "
                        f"{settings.DETECTOR_MIN_CALIBRATION_ROWS}")
    features = reference.features.astype(np.float64)
    stats = {"feature_means": features.mean(axis=0).tolist(), "feature_stds": features.std(axis=0).tolist()}
    state.calibration = {"_context": stats}
    context = model_context(model, state)
    calibration = calibrate(reference, context)
    state.calibration = {"_context": stats, **calibration}
    state.calibration_window = {"from_id": from_id, "to_id": int(last_id), "queries": len(reference),
                                "clients": len(np.unique(reference.client_ids)), "excluded_clients": list(exclude_clients)}
    state.calibrated_at = timezone.now()
    state.save(update_fields=["calibration", "calibration_window", "calibrated_at"])
    return state


def _most_exposed(model: RegisteredModel) -> list[str] | None:
    run = model.audit_runs.latest_finished()
    return run.most_exposed_ids() if run is not None and run.result else None


@dataclass
class ScanSummary:
    model: str
    scanned: int = 0
    chunks: int = 0
    findings: int = 0
    new_alerts: int = 0
    watermark: int = 0
    by_detector: dict[str, int] = field(default_factory=dict)
    skipped: str = ""


def claim_lease(model: RegisteredModel, *, seconds: int) -> bool:
    """One scan per model at a time (beat ticks may overlap with a manual scan)."""
    now = timezone.now()
    state = state_for(model, only_pk=True)
    return bool(DetectorState.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=state.pk)
                .update(lease_until=now + timedelta(seconds=seconds)))


def release_lease(model: RegisteredModel) -> None:
    DetectorState.objects.filter(model=model).update(lease_until=None)


def scan_model(model: RegisteredModel, *, chunk_rows: int | None = None, max_chunks: int | None = None) -> ScanSummary:
    """Scan the model's new queries since its watermark; calibrates first when never calibrated."""
    summary = ScanSummary(model=model.slug)
    if not claim_lease(model, seconds=settings.SCAN_LEASE_SECONDS):
        summary.skipped = "another scan of this model is running"
        return summary
    try:
        return _scan(model, summary, chunk_rows=chunk_rows or settings.SCAN_CHUNK_ROWS, max_chunks=max_chunks)
    finally:
        release_lease(model)


def _scan(model: RegisteredModel, summary: ScanSummary, *, chunk_rows: int, max_chunks: int | None) -> ScanSummary:
    state = state_for(model)
    if not state.calibration.get("_context"):
        try:
            state = calibrate_model(model)
        except ScanError as exc:
            summary.skipped = str(exc)
            return summary
    context = model_context(model, state)
    detectors = build_detectors()
    exposed = _most_exposed(model)
    high = safe_high_water(model)
    while state.watermark_id < high and (max_chunks is None or summary.chunks < max_chunks):
        batch, last_id = load_queries(model, after_id=state.watermark_id, upto_id=high, limit=chunk_rows)
        if len(batch) == 0:
            break
        findings, new_state = scan(batch, context, state.state, detectors=detectors, most_exposed_ids=exposed)
        with transaction.atomic():
            for finding in findings:
                record, created = DetectorFinding.objects.get_or_create(
                    model=model, detector=finding.detector, client_id=finding.client_id[:200], range_end=last_id,
                    defaults={"score": finding.score, "severity": finding.severity, "evidence": finding.evidence,
                              "range_start": state.watermark_id + 1})
                if not created:
                    continue
                alert, opened = raise_signal(Signal(
                    source="detector", kind=finding.detector, model=model, severity=finding.severity,
                    client_id=finding.client_id[:128], title=TITLES.get(finding.detector, finding.detector),
                    evidence={"score": finding.score, **finding.evidence}, quiet_period=DETECTOR_QUIET_PERIOD))
                DetectorFinding.objects.filter(pk=record.pk).update(alert=alert)
                summary.findings += 1
                summary.new_alerts += opened
                summary.by_detector[finding.detector] = summary.by_detector.get(finding.detector, 0) + 1
            DetectorState.objects.filter(pk=state.pk).update(watermark_id=last_id, state=new_state,
                                                             last_scan_at=timezone.now())
        state.watermark_id, state.state = last_id, new_state
        summary.scanned += len(batch)
        summary.chunks += 1
    summary.watermark = state.watermark_id
    context.forget_batch()  # the last chunk's arrays; the member index stays for the next scan
    DetectorState.objects.filter(pk=state.pk).update(last_scan={
        "scanned": summary.scanned, "findings": summary.findings, "new_alerts": summary.new_alerts,
        "by_detector": summary.by_detector, "at": timezone.now().isoformat()})
    return summary
