"""A model's scan: `prepare_scan` calibrates when needed and plans the parts; `scan_part` reads a part's new
queries in chunks, runs its detectors, stores each finding once per range and opens one incident per actor."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitor.detection import incidents
from monitor.detection.calibration import (
    calibrate_model,
    calibration_is_current,
    grown_past_window,
    model_detectors,
)
from monitor.detection.context import ScanError, model_context, state_for
from monitor.detection.detectors import Finding, scan
from monitor.detection.leases import (
    advance_model_watermark,
    model_watermark,
    part_clients,
    part_detectors,
    scan_parts,
)
from monitor.detection.log_reader import load_queries
from monitor.detection.state_rows import StateBuffer, client_last_seen, expire_state
from monitor.ingestion.store import safe_high_water
from monitor.models import DetectorFinding, DetectorState, RegisteredModel, ScannerState, ScanShard
from monitor.platform.locks import ModelLock, lock_model

log = logging.getLogger(__name__)

DETECTOR_QUIET_PERIOD = timedelta(hours=24)


@dataclass
class ScanSummary:
    """What a scan (or one part of it) did: queries read, findings, new alerts, or why it was skipped."""

    model: str
    scanned: int = 0
    chunks: int = 0
    findings: int = 0
    new_alerts: int = 0
    watermark: int = 0
    by_detector: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    parts: int = 0

    def add(self, other: ScanSummary) -> None:
        self.scanned += other.scanned
        self.chunks += other.chunks
        self.findings += other.findings
        self.new_alerts += other.new_alerts
        self.parts += 1
        for name, count in other.by_detector.items():
            self.by_detector[name] = self.by_detector.get(name, 0) + count
        self.skipped = "; ".join(filter(None, [self.skipped, other.skipped]))


@dataclass(frozen=True)
class ScanPlan:
    """A scan ready to run: its parts, and the query id every one of them scans up to (one high-water mark)."""

    parts: tuple[ScanShard, ...]
    upto: int


@dataclass(frozen=True)
class Skipped:
    """Why a model's scan cannot run now (e.g. too few queries to calibrate on yet)."""

    reason: str


def scan_model(model: RegisteredModel, *, chunk_rows: int | None = None, max_chunks: int | None = None,
               count: int | None = None) -> ScanSummary:
    """Scan the model's new queries since its watermark, every part in this process, up to one high-water
    mark; calibrates first when never calibrated. Workers share the parts through `scan_part`."""
    summary = ScanSummary(model=model.slug)
    plan = prepare_scan(model, count=count)
    if isinstance(plan, Skipped):
        summary.skipped = plan.reason
        return summary
    for shard in plan.parts:
        summary.add(scan_part(model, shard.index, upto=plan.upto, chunk_rows=chunk_rows, max_chunks=max_chunks))
    summary.watermark = model_watermark(model)
    DetectorState.objects.filter(model=model).update(last_scan={
        "scanned": summary.scanned, "findings": summary.findings, "new_alerts": summary.new_alerts,
        "by_detector": summary.by_detector, "parts": summary.parts, "at": timezone.now().isoformat()})
    return summary


def prepare_scan(model: RegisteredModel, *, count: int | None = None) -> ScanPlan | Skipped:
    """Calibrate when never calibrated, when the settings changed, or when the traffic outgrew a small window; then
    the parts to scan and the high-water mark they all scan to (or why the scan is skipped)."""
    model.refresh_from_db(fields=["false_alarm_budget"])  # a long-lived caller's copy may predate a change
    state = state_for(model)
    window = state.calibration_window or {}
    if not state.calibration.get("_context"):
        try:
            calibrate_model(model, reason="first scan")
        except ScanError as exc:
            return Skipped(str(exc))
    elif not calibration_is_current(model, state):
        # The budget (or a detector's settings) changed: calibrate again on the window chosen last time.
        try:
            calibrate_model(model, from_id=int(window.get("from_id") or 0), to_id=window.get("to_id"),
                            exclude_clients=tuple(window.get("excluded_clients") or ()), reason="settings changed")
        except ScanError as exc:
            return Skipped(str(exc))
    elif grown_past_window(model, state):
        # Same start, up to now: the calibration keeps pace with the traffic until the window is large enough.
        try:
            calibrate_model(model, from_id=int(window.get("from_id") or 0),
                            exclude_clients=tuple(window.get("excluded_clients") or ()), reason="traffic grew")
        except ScanError as exc:  # the old calibration still holds: scan with it
            log.warning("recalibrating %s as its traffic grew failed: %s", model.slug, exc)
    return ScanPlan(parts=tuple(scan_parts(model, count)), upto=safe_high_water(model))


def scan_part(model: RegisteredModel, index: int, *, upto: int | None = None, chunk_rows: int | None = None,
              max_chunks: int | None = None) -> ScanSummary:
    """Scan one part of the model's queries up to `upto` (default: the safe high-water mark now)."""
    summary = ScanSummary(model=model.slug)
    parts = list(ScanShard.objects.filter(model=model)) or scan_parts(model)
    shard = next((row for row in parts if row.index == index), None)
    if shard is None:
        summary.skipped = f"no part {index} in the model's scan"
        return summary
    if not ScanShard.objects.claim(shard.pk, seconds=settings.SCAN_LEASE_SECONDS):
        summary.skipped = f"part {index} of this model's scan is running elsewhere"
        return summary
    try:
        shard.refresh_from_db(fields=["watermark_id"])
        return _scan_part(model, shard, summary, upto=upto, chunk_rows=chunk_rows or settings.SCAN_CHUNK_ROWS,
                          max_chunks=max_chunks)
    finally:
        ScanShard.objects.release(shard.pk)


def _scan_part(model: RegisteredModel, shard: ScanShard, summary: ScanSummary, *, upto: int | None,
               chunk_rows: int, max_chunks: int | None) -> ScanSummary:
    state = state_for(model)
    if not state.calibration.get("_context"):
        summary.skipped = f"detectors for {model.slug} are not calibrated yet"
        return summary
    context = model_context(model, state)
    detectors = part_detectors(shard, model_detectors(model))
    exposed = _most_exposed(model)
    high = safe_high_water(model) if upto is None else upto
    latest = None
    buffer, pending = StateBuffer(), _Pending()
    while shard.watermark_id < high and (max_chunks is None or summary.chunks < max_chunks):
        batch, last_id = load_queries(model, after_id=shard.watermark_id, upto_id=high, limit=chunk_rows,
                                      shard=part_clients(shard))
        seen = client_last_seen(batch)
        if seen:
            latest = max(latest or -np.inf, *seen.values())
            carried = buffer.load(model, detectors, list(seen), latest=max(seen.values()))
            findings, new_state = scan(batch, context, carried, detectors=detectors, most_exposed_ids=exposed)
            buffer.keep(detectors, new_state, seen)
            pending.findings.append((findings, shard.watermark_id + 1, last_id))
        pending.queries += len(batch)
        pending.chunks += 1
        shard.watermark_id = last_id
        summary.scanned += len(batch)
        summary.chunks += 1
        if pending.queries >= settings.SCAN_STATE_FLUSH_ROWS or buffer.nbytes >= settings.SCAN_STATE_FLUSH_BYTES:
            _commit(model, shard, buffer, pending, summary)
    _commit(model, shard, buffer, pending, summary)
    if latest is not None:
        expire_state(model, detectors, latest=latest)
    summary.watermark = shard.watermark_id
    context.forget_batch()  # the last chunk's arrays; the member index stays for the next scan
    return summary


@dataclass
class _Pending:
    """What a part has scanned since its last commit: each chunk's findings and query range, and how many queries."""

    findings: list[tuple[list[Finding], int, int]] = field(default_factory=list)
    queries: int = 0
    chunks: int = 0


def _commit(model: RegisteredModel, shard: ScanShard, buffer: StateBuffer, pending: _Pending,
            summary: ScanSummary) -> None:
    """One transaction: the findings of the chunks scanned since the last commit, their clients' state rows and the
    part's watermark, so a part that stops anywhere scans again from a point its state and findings agree with."""
    if not pending.chunks:
        return
    with transaction.atomic():
        for findings, range_start, range_end in pending.findings:
            record_findings(model, findings, range_start=range_start, range_end=range_end, summary=summary)
        buffer.write(model)
        ScanShard.objects.filter(pk=shard.pk).update(watermark_id=shard.watermark_id, last_scan_at=timezone.now())
        advance_model_watermark(model, shard.count)
    pending.findings.clear()
    pending.queries = pending.chunks = 0


def _most_exposed(model: RegisteredModel) -> list[str] | None:
    run = model.audit_runs.latest_finished()
    return run.most_exposed_ids() if run is not None and run.result else None


def record_findings(model: RegisteredModel, findings: list[Finding], *, range_start: int, range_end: int,
                    summary: ScanSummary) -> None:
    """Store each finding once per range, then open or update one incident per actor (monitor.detection.incidents):
    every detector's finding on a client and on the accounts linked to it fold into one alert.

    Call inside a transaction. On PostgreSQL the parts of a sharded scan take turns here (a per-model advisory lock
    held to their commit), so two parts finding the same new actor at once open one incident, not two."""
    if findings:
        lock_model(ModelLock.INCIDENTS, model.pk)
    fresh: list[tuple[Finding, DetectorFinding]] = []
    for finding in findings:
        record, created = DetectorFinding.objects.get_or_create(
            model=model, detector=finding.detector, client_id=finding.client_id, range_end=range_end,
            defaults={"score": finding.score, "severity": finding.severity, "evidence": finding.evidence,
                      "range_start": range_start})
        if created:
            fresh.append((finding, record))
    records = {(f.detector, f.client_id): r.pk for f, r in fresh}
    for actor in incidents.group_by_actor(model, [f for f, _ in fresh]):
        for finding in actor.findings:
            summary.findings += 1
            summary.by_detector[finding.detector] = summary.by_detector.get(finding.detector, 0) + 1
        if not incidents.opens_incident(actor):
            continue  # stored as findings (the model page counts them); joins the actor's incident if one opens
        # The alert lifecycle links the findings, the accounts, and fires the model's automatic restriction.
        _, opened = incidents.raise_incident(model, actor, quiet_period=DETECTOR_QUIET_PERIOD,
                                             finding_ids=[records[(f.detector, f.client_id)] for f in actor.findings])
        summary.new_alerts += opened


def rewind_scanner(model: RegisteredModel, to_id: int = 0) -> None:
    """Scan again from `to_id` with no carried state (a rescan of a range stores no finding twice)."""
    with transaction.atomic():
        ScanShard.objects.filter(model=model).delete()
        ScannerState.objects.filter(model=model).delete()
        DetectorState.objects.filter(pk=state_for(model, only_pk=True).pk).update(watermark_id=to_id)
