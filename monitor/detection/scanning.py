"""Scanning the query log with the detectors: calibrate on a reference window, then scan new queries
since the watermark in bounded chunks; findings are stored once per range and open or update alerts.
A scan has one part, or several (client-hash shards, and one part for the detectors that compare
clients) that workers claim and run at once; each part keeps its own watermark and lease.

Member records are decrypted into memory for the training-proximity index and never written anywhere.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from monitor.detection import incidents
from monitor.detection.detectors import (
    Detector,
    Finding,
    ModelContext,
    QueryBatch,
    build_detectors,
    calibrate,
    detector_names,
    scan,
)
from monitor.detection.state_rows import client_last_seen, expire_state, load_state, save_state
from monitor.gateway.restrictions import auto_restrict
from monitor.ingestion.store import safe_high_water
from monitor.ingestion.vectors import decode_vectors
from monitor.models import (
    AlertAccount,
    ClientDayRollup,
    DetectorFinding,
    DetectorState,
    QueryLog,
    RegisteredModel,
    ScannerState,
    ScanShard,
)
from monitor.platform.crypto import data_fernet
from monitor.trail.chain import canonical_json

log = logging.getLogger(__name__)

DETECTOR_QUIET_PERIOD = timedelta(hours=24)
INCIDENT_LOCK_CLASS = 7333  # advisory-lock namespace (7331 ingestion, 7332 partitions)


class ScanError(RuntimeError):
    pass


def state_for(model: RegisteredModel, *, only_pk: bool = False) -> DetectorState:
    """The model's detector state, created (with a fresh fingerprint key) on first use. `only_pk` reads none of
    the JSON fields."""
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


def client_shard(client_id: str, count: int) -> int:
    """The shard of a client among `count` (SQLite; PostgreSQL filters with its own hashtext)."""
    return zlib.crc32(client_id.encode()) % count


def load_queries(model: RegisteredModel, *, after_id: int, upto_id: int, limit: int,
                 exclude_clients: tuple[str, ...] = (), shard: tuple[int, int] | None = None) -> tuple[QueryBatch, int]:
    """Queries with after_id < id ≤ upto_id in id order, at most `limit` read; returns the batch and the id it
    got to (`upto_id` once the range is exhausted). `shard` = (index, count) keeps the clients of one shard."""
    table = QueryLog._meta.db_table
    where, params = "model_id = %s AND id > %s AND id <= %s", [model.pk, after_id, upto_id]
    if shard is not None and connection.vendor == "postgresql":
        where += " AND (hashtext(client_id) & 2147483647) %% %s = %s"
        params += [shard[1], shard[0]]
    sql = (f"SELECT id, client_id, {_epoch_expression()}, features, outputs FROM {table} "  # noqa: S608  # nosec B608
           f"WHERE {where} ORDER BY id LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        rows = cursor.fetchall()
    reached = rows[-1][0] if len(rows) == limit else upto_id
    if shard is not None and connection.vendor != "postgresql":
        rows = [row for row in rows if client_shard(row[1], shard[1]) == shard[0]]
    if exclude_clients:
        excluded = set(exclude_clients)
        rows = [row for row in rows if row[1] not in excluded]
    d, k = model.n_features, len(model.class_labels)
    batch = QueryBatch(
        query_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        client_ids=np.array([r[1] for r in rows], dtype=str) if rows else np.empty(0, dtype=str),
        timestamps=np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
        features=decode_vectors([r[3] for r in rows], d),
        outputs=decode_vectors([r[4] for r in rows], k),
    )
    return batch, reached


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
                    exclude_clients: tuple[str, ...] = (), max_rows: int | None = None,
                    reason: str = "requested") -> DetectorState:
    """Calibrate every detector on a window of the model's own (benign) traffic.

    Pick a window without known attackers (`exclude_clients`; clients in unresolved detector incidents are left out
    too, and trimmed_calibration leaves out those the window's own calibration flags); the thresholds it yields are
    stated as expected false-alarm rates per client-day in each detector's calibration. `reason` is recorded with
    the window (first scan, settings changed, traffic grew, requested).
    """
    state = state_for(model)
    previous = (state.calibration_window or {}).get("client_days")
    upto = safe_high_water(model) if to_id is None else to_id
    # A client in an unresolved incident is a known attacker: a recalibration must not learn its traffic as normal.
    suspects = sorted(set(AlertAccount.objects.filter(alert__model=model, alert__source="detector")
                          .exclude(alert__status="resolved").values_list("client_id", flat=True)) - set(exclude_clients))
    reference, last_id, shard = _calibration_rows(model, from_id=from_id, upto=upto,
                                                  exclude_clients=(*exclude_clients, *suspects),
                                                  cap=max_rows or settings.DETECTOR_CALIBRATION_ROWS)
    if len(reference) < settings.DETECTOR_MIN_CALIBRATION_ROWS:
        raise ScanError(f"{len(reference)} reference queries for {model.slug}; calibration needs at least "
                        f"{settings.DETECTOR_MIN_CALIBRATION_ROWS}")
    features = reference.features.astype(np.float64)
    stats = {"feature_means": features.mean(axis=0).tolist(), "feature_stds": features.std(axis=0).tolist()}
    state.calibration = {"_context": stats}
    context = model_context(model, state)
    calibration, trimmed, reference = trimmed_calibration(reference, context, model_detectors(model))
    state.calibration = {"_context": stats, **calibration}
    span = float(reference.timestamps.max() - reference.timestamps.min()) if len(reference) else 0.0
    clients = len(np.unique(reference.client_ids))
    state.calibration_window = {"from_id": from_id, "to_id": int(last_id), "queries": len(reference),
                                "clients": clients, "excluded_clients": list(exclude_clients),
                                "incident_clients": suspects,
                                "trimmed_clients": trimmed, "client_sample": list(shard) if shard else None,
                                # What the window can vouch for: a rate far below 1 / client-days is extrapolated.
                                "client_days": round(clients * max(span / 86_400, 1 / 24), 1),
                                "reason": reason, "previous_client_days": previous}
    state.calibrated_at = timezone.now()
    state.save(update_fields=["calibration", "calibration_window", "calibrated_at"])
    return state


def _calibration_rows(model: RegisteredModel, *, from_id: int, upto: int, exclude_clients: tuple[str, ...],
                      cap: int) -> tuple[QueryBatch, int, tuple[int, int] | None]:
    """The window's queries, or when it holds more than `cap`, every query of a hash sample of its clients: whole
    clients over the whole window, not the window's first hours (which left per-client statistics fitted on the
    few clients busy enough early on, and benign clients flagged at ten times the budget)."""
    rows = QueryLog.objects.filter(model=model, id__gt=from_id, id__lte=upto).count()
    if rows <= cap:
        batch, last_id = load_queries(model, after_id=from_id, upto_id=upto, limit=cap, exclude_clients=exclude_clients)
        return batch, last_id, None
    shard = (0, math.ceil(rows / cap))
    # PostgreSQL filters the clients in SQL; SQLite reads the window and filters in Python.
    limit = int(cap * 1.25) if connection.vendor == "postgresql" else rows
    batch, last_id = load_queries(model, after_id=from_id, upto_id=upto, limit=limit, exclude_clients=exclude_clients,
                                  shard=shard)
    return batch, last_id, shard


TRIM_ROUNDS = 3
UNTRIMMED = ("distribution_shift",)
MAX_TRIMMED_SHARE = 0.2  # never trim more than this share of the window's clients: past it, the window is not benign


def trimmed_calibration(reference: QueryBatch, context: ModelContext,
                        detectors: list[Detector]) -> tuple[dict[str, Any], list[str], QueryBatch]:
    """Calibrate, scan the window itself with that calibration, leave out the clients it flags, and calibrate again
    (at most TRIM_ROUNDS times): a window that holds a minority of attacking clients — a team never knows which —
    ends up calibrated on the others. Returns (calibration, the clients left out, the reference calibrated on)."""
    calibration = calibrate(reference, context, detectors=detectors)
    trimmed: list[str] = []
    n_clients = len(np.unique(reference.client_ids))
    for _ in range(TRIM_ROUNDS):
        context.calibration = dict(calibration)
        findings, _ = scan(reference, context, None, detectors=detectors)
        context.forget_batch()
        # Distribution shift flags clients that are merely unusual; leaving those out would narrow what "usual"
        # means and raise its false alarms on fresh traffic (measured: 4 in 400 benign client-days instead of 0).
        flagged = sorted({finding.client_id for finding in findings if finding.detector not in UNTRIMMED}
                         - set(trimmed))
        if not flagged or len(trimmed) + len(flagged) > MAX_TRIMMED_SHARE * n_clients:
            break
        keep = ~np.isin(reference.client_ids, flagged)
        if keep.sum() < settings.DETECTOR_MIN_CALIBRATION_ROWS:
            break
        trimmed += flagged
        reference = reference.take(keep)
        calibration = calibrate(reference, context, detectors=detectors)
    context.forget_batch()
    return calibration, trimmed, reference


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


# ---- parts of a scan -------------------------------------------------------------------------------------


def model_detectors(model: RegisteredModel) -> list[Detector]:
    """Every detector, each allowed an equal share of the model's false-alarm budget (Bonferroni): with one incident
    per actor, a benign client opens one when any detector fires, so the shares add up to the budget."""
    names = detector_names()
    share = float(model.false_alarm_budget) / len(names)
    return build_detectors({name: {"false_alarm_rate": share} for name in names})


def calibration_is_current(model: RegisteredModel, state: DetectorState) -> bool:
    """True when every detector was calibrated with the settings it scans with now (the budget included)."""
    return all((state.calibration.get(detector.name) or {}).get("settings") == detector.settings()
               for detector in model_detectors(model))


def part_detectors(shard: ScanShard, detectors: list[Detector]) -> list[Detector]:
    """One part runs everything; of n > 1, parts 0..n-1 the per-client detectors, part n those comparing clients."""
    if shard.count == 1:
        return detectors
    compares = shard.index == shard.count
    return [detector for detector in detectors if detector.compares_clients == compares]


def _client_filter(shard: ScanShard) -> tuple[int, int] | None:
    return None if shard.count == 1 or shard.index == shard.count else (shard.index, shard.count)


def scan_parts(model: RegisteredModel, count: int | None = None) -> list[ScanShard]:
    """The parts of the model's scan, created at the model's watermark on first use.

    A new part count (`SCAN_SHARDS`) takes over only where every current part has reached the same query
    id and none is being scanned, so no query is scanned twice or skipped for a client that changes part.
    """
    count = max(1, count or settings.SCAN_SHARDS)
    rows = list(ScanShard.objects.filter(model=model).order_by("count", "index"))
    if rows and {row.count for row in rows} == {count}:
        return rows
    now = timezone.now()
    if rows and (len({row.watermark_id for row in rows}) > 1 or any(r.lease_until and r.lease_until > now for r in rows)):
        return [row for row in rows if row.count == rows[0].count]  # finish the round first
    start = rows[0].watermark_id if rows else model_watermark(model)
    indices = [0] if count == 1 else range(count + 1)
    with transaction.atomic():
        ScanShard.objects.filter(model=model).exclude(count=count).delete()
        ScanShard.objects.bulk_create([ScanShard(model=model, count=count, index=i, watermark_id=start) for i in indices],
                                      ignore_conflicts=True)
    return list(ScanShard.objects.filter(model=model, count=count).order_by("index"))


def model_watermark(model: RegisteredModel) -> int:
    """Where every part of the model's scan has got to."""
    return DetectorState.objects.filter(model=model).values_list("watermark_id", flat=True).first() or 0


def claim_part(shard: ScanShard, *, seconds: int) -> bool:
    """One worker per part at a time (beat ticks may overlap with a manual scan)."""
    now = timezone.now()
    return bool(ScanShard.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=shard.pk)
                .update(lease_until=now + timedelta(seconds=seconds), held_by=f"{socket.gethostname()}:{os.getpid()}"))


def release_part(shard: ScanShard) -> None:
    ScanShard.objects.filter(pk=shard.pk).update(lease_until=None)


def rewind_scanner(model: RegisteredModel, to_id: int = 0) -> None:
    """Scan again from `to_id` with no carried state (a rescan of a range stores no finding twice)."""
    with transaction.atomic():
        ScanShard.objects.filter(model=model).delete()
        ScannerState.objects.filter(model=model).delete()
        DetectorState.objects.filter(pk=state_for(model, only_pk=True).pk).update(watermark_id=to_id)


def scan_model(model: RegisteredModel, *, chunk_rows: int | None = None, max_chunks: int | None = None,
               count: int | None = None) -> ScanSummary:
    """Scan the model's new queries since its watermark, every part in this process, up to one high-water
    mark; calibrates first when never calibrated. Workers share the parts through `scan_part`."""
    summary = ScanSummary(model=model.slug)
    prepared = prepare_scan(model, count=count)
    if isinstance(prepared, str):
        summary.skipped = prepared
        return summary
    parts, high = prepared
    for shard in parts:
        summary.add(scan_part(model, shard.index, upto=high, chunk_rows=chunk_rows, max_chunks=max_chunks))
    summary.watermark = model_watermark(model)
    DetectorState.objects.filter(model=model).update(last_scan={
        "scanned": summary.scanned, "findings": summary.findings, "new_alerts": summary.new_alerts,
        "by_detector": summary.by_detector, "parts": summary.parts, "at": timezone.now().isoformat()})
    return summary


def prepare_scan(model: RegisteredModel, *, count: int | None = None) -> tuple[list[ScanShard], int] | str:
    """Calibrate when never calibrated; the parts to scan and the high-water mark they all scan to (or why not)."""
    model.refresh_from_db(fields=["false_alarm_budget"])  # a long-lived caller's copy may predate a change
    state = state_for(model)
    window = state.calibration_window or {}
    if not state.calibration.get("_context"):
        try:
            calibrate_model(model, reason="first scan")
        except ScanError as exc:
            return str(exc)
    elif not calibration_is_current(model, state):
        # The budget (or a detector's settings) changed: calibrate again on the window chosen last time.
        try:
            calibrate_model(model, from_id=int(window.get("from_id") or 0), to_id=window.get("to_id"),
                            exclude_clients=tuple(window.get("excluded_clients") or ()), reason="settings changed")
        except ScanError as exc:
            return str(exc)
    elif grown_past_window(model, state):
        # Same start, up to now: the calibration keeps pace with the traffic until the window is large enough.
        try:
            calibrate_model(model, from_id=int(window.get("from_id") or 0),
                            exclude_clients=tuple(window.get("excluded_clients") or ()), reason="traffic grew")
        except ScanError as exc:  # the old calibration still holds: scan with it
            log.warning("recalibrating %s as its traffic grew failed: %s", model.slug, exc)
    return scan_parts(model, count), safe_high_water(model)


def grown_past_window(model: RegisteredModel, state: DetectorState) -> bool:
    """While the calibration window holds fewer client-days than the budget needs (`calibration_advice`), true once
    the model has logged DETECTOR_RECALIBRATE_GROWTH - 1 times as many client-days after the calibration as the window
    held. Each window at least doubles (growth 2), so a model that starts small is calibrated again a few times
    (log2 of 1,000 over its first window's client-days) and then no more. Counts the folded daily rollups."""
    growth = settings.DETECTOR_RECALIBRATE_GROWTH
    held = (state.calibration_window or {}).get("client_days")
    if growth <= 1 or held is None or held >= DetectorState.ADVISED_CLIENT_DAYS or state.calibrated_at is None:
        return False
    since = timezone.localtime(state.calibrated_at, timezone.get_default_timezone()).date()
    logged = ClientDayRollup.objects.filter(model=model, day__gt=since).count()
    return logged >= (growth - 1) * max(float(held), 1.0)


def scan_part(model: RegisteredModel, index: int, *, upto: int | None = None, chunk_rows: int | None = None,
              max_chunks: int | None = None) -> ScanSummary:
    """Scan one part of the model's queries up to `upto` (default: the safe high-water mark now)."""
    summary = ScanSummary(model=model.slug)
    parts = list(ScanShard.objects.filter(model=model)) or scan_parts(model)
    shard = next((row for row in parts if row.index == index), None)
    if shard is None:
        summary.skipped = f"no part {index} in the model's scan"
        return summary
    if not claim_part(shard, seconds=settings.SCAN_LEASE_SECONDS):
        summary.skipped = f"part {index} of this model's scan is running elsewhere"
        return summary
    try:
        shard.refresh_from_db(fields=["watermark_id"])
        return _scan_part(model, shard, summary, upto=upto, chunk_rows=chunk_rows or settings.SCAN_CHUNK_ROWS,
                          max_chunks=max_chunks)
    finally:
        release_part(shard)


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
    while shard.watermark_id < high and (max_chunks is None or summary.chunks < max_chunks):
        batch, last_id = load_queries(model, after_id=shard.watermark_id, upto_id=high, limit=chunk_rows,
                                      shard=_client_filter(shard))
        seen = client_last_seen(batch)
        findings: list[Finding] = []
        new_state: dict[str, Any] = {}
        if seen:
            latest = max(latest or -np.inf, *seen.values())
            loaded = load_state(model, detectors, list(seen), latest=max(seen.values()))
            findings, new_state = scan(batch, context, loaded.state, detectors=detectors, most_exposed_ids=exposed)
        with transaction.atomic():
            record_findings(model, findings, range_start=shard.watermark_id + 1, range_end=last_id, summary=summary)
            if seen:
                save_state(model, detectors, new_state, seen, loaded)
            ScanShard.objects.filter(pk=shard.pk).update(watermark_id=last_id, last_scan_at=timezone.now())
            _advance_model_watermark(model, shard.count)
        shard.watermark_id = last_id
        summary.scanned += len(batch)
        summary.chunks += 1
    if latest is not None:
        expire_state(model, detectors, latest=latest)
    summary.watermark = shard.watermark_id
    context.forget_batch()  # the last chunk's arrays; the member index stays for the next scan
    return summary


def _advance_model_watermark(model: RegisteredModel, count: int) -> None:
    """The model's watermark is where every part has got to (retention waits for it)."""
    lowest = ScanShard.objects.filter(model=model, count=count).aggregate(low=Min("watermark_id"))["low"]
    if lowest is not None:
        DetectorState.objects.filter(model=model).update(watermark_id=lowest, last_scan_at=timezone.now())


def record_findings(model: RegisteredModel, findings: list[Finding], *, range_start: int, range_end: int,
            summary: ScanSummary) -> None:
    """Store each finding once per range, then open or update one incident per actor (monitor.detection.incidents):
    every detector's finding on a client and on the accounts linked to it fold into one alert.

    Call inside a transaction. On PostgreSQL the parts of a sharded scan take turns here (a per-model advisory lock
    held to their commit), so two parts finding the same new actor at once open one incident, not two."""
    if findings and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INCIDENT_LOCK_CLASS, model.pk])
    fresh: list[tuple[Finding, DetectorFinding]] = []
    for finding in findings:
        record, created = DetectorFinding.objects.get_or_create(
            model=model, detector=finding.detector, client_id=finding.client_id[:200], range_end=range_end,
            defaults={"score": finding.score, "severity": finding.severity, "evidence": finding.evidence,
                      "range_start": range_start})
        if created:
            fresh.append((finding, record))
    records = {(f.detector, f.client_id[:200]): r.pk for f, r in fresh}
    for actor in incidents.group_by_actor(model, [f for f, _ in fresh]):
        for finding in actor.findings:
            summary.findings += 1
            summary.by_detector[finding.detector] = summary.by_detector.get(finding.detector, 0) + 1
        if not incidents.opens_incident(actor):
            continue  # stored as findings (the model page counts them); joins the actor's incident if one opens
        alert, opened = incidents.raise_incident(model, actor, quiet_period=DETECTOR_QUIET_PERIOD)
        DetectorFinding.objects.filter(pk__in=[records[(f.detector, f.client_id[:200])] for f in actor.findings]
                                       ).update(alert=alert)
        auto_restrict(model, alert)  # the model's automatic gateway restriction, if it has one
        summary.new_alerts += opened
