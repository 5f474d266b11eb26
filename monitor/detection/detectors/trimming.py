"""Calibrating on a window that may hold attackers: each client is judged by a calibration fitted on the other clients
(cross-fitting), the clients it finds far beyond benign are left out, and the detectors are calibrated on the rest.

A heavy attacker in a small first window is a large share of it, and a calibration that counts it learns it as normal
(its sweep sets the near-duplicate tail, its hits the base rates, its burst the volume tail). Judged by such a
calibration it was flagged or not by the keyed statistics alone, so by the draw of the model's key (a boundary prober
in a new model's first scan: caught under 7 of 24 keys), and under no key when leaving it out would have left fewer
queries than a calibration starts from. Judged by the other clients' calibration, its volume and its member hits,
which owe nothing to the key, put it far beyond benign whatever the key (`tests/detection/test_key_independence.py`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.detection.detectors.base import Detector, Finding, ModelContext, QueryBatch
from monitor.detection.detectors.registry import calibrate, scan
from monitor.platform.severity import Severity

TRIM_ROUNDS = 3
# Distribution shift flags clients that are merely unusual; leaving those out would narrow what "usual" means and
# raise its false alarms on fresh traffic (measured: 4 in 400 benign client-days instead of 0).
UNTRIMMED = ("distribution_shift",)
MAX_TRIMMED_SHARE = 0.2  # never trim more than this share of the window's clients: past it, the window is not benign


@dataclass(frozen=True)
class TrimmedCalibration:
    """The detectors' calibration, the clients left out of it, and the reference it was fitted on."""

    calibration: dict[str, dict[str, Any]]
    trimmed: list[str]
    reference: QueryBatch


def first_half(client_ids: np.ndarray) -> np.ndarray:
    """True for the queries of one half of the clients: ranked by CRC-32 of their id and dealt in turn, so each half
    holds as many clients, and a client's half is the same on every database and worker, whatever the key."""
    clients, inverse = np.unique(np.asarray(client_ids).astype(str), return_inverse=True)
    hashes = np.fromiter((zlib.crc32(client.encode()) for client in clients.tolist()), np.int64, len(clients))
    rank = np.empty(len(clients), np.int64)
    rank[np.lexsort((np.arange(len(clients)), hashes))] = np.arange(len(clients))
    return (rank % 2 == 0)[inverse.reshape(-1)]


def is_blatant(finding: Finding) -> bool:
    """A finding at twice its detector's threshold, a false-alarm probability of the rate squared per client-day: what
    `severity_for` calls critical, read from the score because volume reports its findings a level lower.

    Only these are left out. Judged by the other clients' calibration, benign clients reach the threshold itself at
    about the budget's rate (measured: 4 clients in 3,200 benign client-days, none of them at twice it), and each one
    left out narrows what the calibration calls usual and is judged without itself from then on."""
    rate = finding.evidence.get("false_alarm_rate")
    if not rate:
        return Severity(finding.severity) == Severity.CRITICAL
    return finding.score >= 2 * -math.log10(float(rate))


def cross_fitted_flags(reference: QueryBatch, context: ModelContext, detectors: list[Detector]) -> set[str]:
    """Clients that a calibration on the other half of the clients finds far beyond benign (`is_blatant`; distribution
    shift aside): no client is judged by a calibration it is part of. Two halves cost about what one calibration and
    one scan of the window do. A window of one client is judged by its own calibration."""
    screening = [detector for detector in detectors if detector.name not in UNTRIMMED]
    if not screening:
        return set()
    first = first_half(reference.client_ids)
    halves = reference.take(first), reference.take(~first)
    # (calibrated on, judged): the order lets each half's prepared arrays serve its calibration and then its scan.
    pairs = [(halves[1], halves[0]), (halves[0], halves[1])] if (~first).any() else [(reference, reference)]
    flagged: set[str] = set()
    for fitted, judged in pairs:
        context.calibration = calibrate(fitted, context, detectors=screening)
        findings, _ = scan(judged, context, None, detectors=screening)
        flagged |= {finding.client_id for finding in findings if is_blatant(finding)}
    context.forget_batch()
    return flagged


def trimmed_calibration(reference: QueryBatch, context: ModelContext, detectors: list[Detector]) -> TrimmedCalibration:
    """Leave out the clients the cross-fitted scan finds far beyond benign, again on what is left (at most TRIM_ROUNDS
    times), then calibrate on the rest: a window that holds a minority of attacking clients — a team never knows
    which — ends up calibrated on the others.

    A round that would leave out more than MAX_TRIMMED_SHARE of the window's clients leaves out none of them. The
    rows left may be fewer than a calibration would start from: calibrating on an attacker is worse than calibrating
    on fewer benign queries, and a small window is said (the calibration advice) and calibrated again as it grows.
    """
    trimmed: list[str] = []
    n_clients = len(np.unique(reference.client_ids))
    with context.remembering_matches():
        for _ in range(TRIM_ROUNDS):
            flagged = sorted(cross_fitted_flags(reference, context, detectors) - set(trimmed))
            if not flagged or len(trimmed) + len(flagged) > MAX_TRIMMED_SHARE * n_clients:
                break
            trimmed += flagged
            reference = reference.take(~np.isin(reference.client_ids, flagged))
        calibration = calibrate(reference, context, detectors=detectors)
    context.calibration = dict(calibration)
    context.forget_batch()
    return TrimmedCalibration(calibration=calibration, trimmed=trimmed, reference=reference)
