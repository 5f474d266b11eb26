"""Per-client tests on blocks of queries: a client's flags accumulate across scans until a block is full.

Testing once per block of at least `min_queries` units makes the false-alarm rate a property of
the traffic, not of how often the beat task runs; a slow attacker still fills blocks. A unit is a
distinct record by default, or a distinct neighbourhood: honest clients re-send and edit the same
few customers, and counting every query as independent evidence would flag them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from monitor.detection.detectors.base import (
    MAX_EVIDENCE_IDS,
    SECONDS_PER_DAY,
    STATE_HORIZON_SECONDS,
    Finding,
    PreparedBatch,
    evidence_ids,
    score_from_p,
    severity_for,
)
from monitor.detection.detectors.carried import HORIZON_SECONDS as CARRIED_HORIZON_SECONDS
from monitor.detection.detectors.carried import (
    History,
    applies,
    carried_tail,
    joint_p,
    unit_hashes,
)
from monitor.detection.detectors.carried import prune as prune_histories
from monitor.detection.detectors.carried import update as update_history
from monitor.detection.detectors.significance import (
    binomial_tail,
    fit_base_rate,
    fit_mean_dispersion,
    normal_two_sided,
    rho_upper_bound,
)

# Pending blocks of clients that went quiet are dropped after this long, keeping the state bounded.
PENDING_MAX_AGE_SECONDS = STATE_HORIZON_SECONDS
PENDING_MAX_CLIENTS = 200_000
# Fewer clients with a full block than this in the reference: a share test's base rate is fitted on every client.
MIN_BLOCK_CLIENTS = 10


@dataclass
class BlockResult:
    """One client's completed block: its counts, the block's p-value and the same per client-day."""

    client_id: str
    n: int
    hits: float
    p_value: float
    p_per_day: float
    query_ids: list[Any] = field(default_factory=list)
    member_ids: list[Any] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def blocks_per_client_day(prepared: PreparedBatch, units: np.ndarray, min_units: int) -> float:
    """How many blocks a busy benign client (90th percentile) fills per day of reference traffic.

    Bonferroni over a day's blocks turns the per-block alpha into the stated per client-day rate.
    """
    if len(prepared) == 0:
        return 1.0
    span_days = max((prepared.times.max() - prepared.times.min()) / SECONDS_PER_DAY, 1.0 / 24)
    per_day = np.quantile(units / span_days, 0.9)
    return float(max(1.0, per_day / min_units))


def _bounded(values: list[Any], limit: int = MAX_EVIDENCE_IDS) -> list[Any]:
    return sorted(values)[:limit]


def first_of_keys(prepared: PreparedBatch, keys: np.ndarray | None) -> np.ndarray:
    """True for the first sorted row of each (client, key); of each (client, record) when `keys` is None."""
    if keys is None:
        return prepared.first_seen.copy()
    first = np.zeros(len(prepared), bool)
    if len(prepared):
        order = np.lexsort((np.arange(len(prepared)), keys, prepared.codes))
        new = np.r_[True, (keys[order][1:] != keys[order][:-1]) | (prepared.codes[order][1:] != prepared.codes[order][:-1])]
        first[order[new]] = True
    return first


def fresh_rows(prepared: PreparedBatch, pending: Mapping[str, Any], keys: np.ndarray | None = None) -> np.ndarray:
    """Sorted rows that count: the first of each record (or of each `keys` unit) per client, not already in the
    client's open block."""
    fresh = first_of_keys(prepared, keys)
    keys = prepared.repeat_keys if keys is None else keys
    for client, code in prepared.client_positions(pending).items():
        seen = pending[client].get("seen") or []
        if seen:
            lo, hi = prepared.starts[code], prepared.starts[code + 1]
            fresh[lo:hi] &= ~np.isin(keys[lo:hi], np.asarray(seen, dtype=np.int64))
    return fresh


def _prune(pending: dict[str, dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    kept = {
        client: entry for client, entry in pending.items() if now - entry["last"] <= PENDING_MAX_AGE_SECONDS
    }
    if len(kept) > PENDING_MAX_CLIENTS:
        newest = sorted(kept.items(), key=lambda item: (-item[1]["last"], item[0]))[:PENDING_MAX_CLIENTS]
        kept = dict(newest)
    return dict(sorted(kept.items()))


@dataclass
class _ShareCounts:
    """New units and hits per client code in a batch."""

    n: np.ndarray
    x: np.ndarray
    counted: np.ndarray  # sorted rows that opened a unit counted here
    hit_pairs: tuple[np.ndarray, np.ndarray]  # distinct (client code, hit key) counted here


def _share_counts(
    prepared: PreparedBatch,
    hits: np.ndarray,
    unit_keys: np.ndarray,
    hit_keys: np.ndarray | None,
    pending: Mapping[str, Any],
) -> _ShareCounts:
    """Units are distinct (client, unit key); a unit is a hit when any of its queries is flagged, or,
    with `hit_keys`, hits are distinct (client, hit key) among flagged queries. Units and hit keys
    already in a client's open block count once."""
    n_rows, n_clients = len(prepared), len(prepared.clients)
    order = np.lexsort((np.arange(n_rows), unit_keys, prepared.codes))
    codes, units = prepared.codes[order], unit_keys[order]
    opens = (
        np.r_[True, (codes[1:] != codes[:-1]) | (units[1:] != units[:-1])] if n_rows else np.zeros(0, bool)
    )
    starts = np.flatnonzero(opens)
    counted = np.zeros(n_rows, bool)
    counted[order[starts]] = True
    unit_hit = np.zeros(n_rows, bool)
    if n_rows:
        unit_hit[order[starts]] = np.maximum.reduceat(hits[order].astype(np.int8), starts).astype(bool)
    flagged = hits & (hit_keys >= 0) if hit_keys is not None else np.zeros(n_rows, bool)
    for client, code in prepared.client_positions(pending).items():
        lo, hi = prepared.starts[code], prepared.starts[code + 1]
        seen = pending[client].get("seen") or []
        if seen:
            counted[lo:hi] &= ~np.isin(unit_keys[lo:hi], np.asarray(seen, dtype=np.int64))
        if hit_keys is not None and pending[client].get("hit_seen"):
            flagged[lo:hi] &= ~np.isin(
                hit_keys[lo:hi], np.asarray(pending[client]["hit_seen"], dtype=np.int64)
            )
    n = np.bincount(prepared.codes[counted], minlength=n_clients)
    if hit_keys is None:
        x = np.bincount(prepared.codes[counted & unit_hit], minlength=n_clients)
        pairs = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    else:
        pair_codes, pair_keys = prepared.codes[flagged], hit_keys[flagged]
        step = int(hit_keys.max(initial=0)) + 1
        distinct = np.unique(pair_codes * step + pair_keys)
        pairs = (distinct // step, distinct % step)
        x = np.bincount(pairs[0], minlength=n_clients)
    return _ShareCounts(n=n, x=x.astype(np.float64), counted=counted, hit_pairs=pairs)


def calibrate_share(
    prepared: PreparedBatch,
    hits: np.ndarray,
    *,
    min_queries: int,
    unit_keys: np.ndarray | None = None,
    hit_keys: np.ndarray | None = None,
) -> dict[str, float]:
    """Base rate of hits per unit among benign clients, its overdispersion, blocks per client-day.

    Counting is the same as in `scan_share`: by default a unit is a distinct record of the client.
    """
    counts = _share_counts(
        prepared, hits, prepared.repeat_keys if unit_keys is None else unit_keys, hit_keys, {}
    )
    n, x = counts.n, np.minimum(counts.x, counts.n)
    # The clients with a block as large as a tested one, once there are enough of them to fit on; else every client.
    # One such client in a small window made the rate its own (none of its 30 regions hit: 1.6 % where the window's
    # 60 clients showed 8.8 %), and whether a client reached 30 regions depended on the key.
    enough = n >= min_queries
    fitted = enough if enough.sum() >= MIN_BLOCK_CLIENTS else np.ones(len(n), bool)
    base_rate, rho = fit_base_rate(x[fitted], n[fitted])
    return {
        "base_rate": base_rate,
        "rho": rho,
        # For the carried test (carried.py): the units of a week are many days' worth, so rho's noise matters.
        "rho_upper": rho_upper_bound(x[fitted], n[fitted], base_rate, rho),
        "horizon_seconds": CARRIED_HORIZON_SECONDS,
        "blocks_per_client_day": blocks_per_client_day(prepared, n, min_queries),
        "reference_queries": int(len(prepared)),
        "reference_units": int(n.sum()),
        "reference_clients": int(len(prepared.clients)),
    }


def scan_share(
    prepared: PreparedBatch,
    hits: np.ndarray,
    *,
    calibration: Mapping[str, Any],
    min_queries: int,
    pending: Mapping[str, Any] | None,
    unit_keys: np.ndarray | None = None,
    hit_keys: np.ndarray | None = None,
    member_ids: np.ndarray | None = None,
    histories: Mapping[str, Any] | None = None,
) -> tuple[list[BlockResult], dict[str, dict[str, Any]]]:
    """Add this batch (sorted order) to each client's open block; test blocks of `min_queries` units.

    Returns the tested blocks (the caller keeps the significant ones) and the new state: {"pending": open blocks},
    and with `histories` (the client's epochs of `carried.py`, {} at first) {"carried": the updated epochs}, whose
    test joins each tested block's (`carried.joint_p`) when the calibration has it.
    With `member_ids`, `hit_keys` are member positions and the block reports the members hit.
    """
    carried: dict[str, dict[str, Any]] = {client: dict(entry) for client, entry in (pending or {}).items()}
    epochs = _Epochs.start(prepared, hits, unit_keys=prepared.repeat_keys if unit_keys is None else unit_keys,
                           hit_keys=hit_keys, histories=histories, calibration=calibration)
    unit_keys = prepared.repeat_keys if unit_keys is None else unit_keys
    counts = _share_counts(prepared, hits, unit_keys, hit_keys, carried)
    hit_starts = np.searchsorted(counts.hit_pairs[0], np.arange(len(prepared.clients) + 1))
    last_new = np.maximum.reduceat(prepared.times, prepared.starts[:-1]) if len(prepared) else np.zeros(0)
    empty: dict[str, Any] = {
        "n": 0,
        "hits": 0.0,
        "ids": [],
        "members": [],
        "seen": [],
        "hit_seen": [],
        "last": 0.0,
    }
    tested: list[tuple[int, int, float, dict[str, Any]]] = []
    for code, client in enumerate(prepared.clients.tolist()):
        entry = carried.pop(client, None) or dict(empty)
        lo, hi = prepared.starts[code], prepared.starts[code + 1]
        new_hit_keys = counts.hit_pairs[1][hit_starts[code] : hit_starts[code + 1]].tolist()
        members = list(entry.get("members", []))
        if member_ids is not None and new_hit_keys:
            members = sorted(set(members) | set(evidence_ids(member_ids[np.asarray(new_hit_keys)])))
        merged: dict[str, Any] = {
            "n": int(entry["n"]) + int(counts.n[code]),
            "hits": float(entry["hits"]) + float(counts.x[code]),
            "ids": _bounded(list(entry["ids"]) + evidence_ids(prepared.query_ids[lo:hi][hits[lo:hi]])),
            "members": _bounded(members),
            "last": float(max(entry["last"], last_new[code])),
        }
        epochs.add(code, client, lo, hi)
        if merged["n"] >= min_queries:
            tested.append((code, merged["n"], min(merged["hits"], merged["n"]), merged))
        elif counts.n[code] or entry["n"]:
            # An open block has fewer than min_queries units, so these lists stay short.
            merged["seen"] = sorted(
                set(entry.get("seen", [])) | set(unit_keys[lo:hi][counts.counted[lo:hi]].tolist())
            )
            merged["hit_seen"] = _bounded(
                sorted(set(entry.get("hit_seen", [])) | set(new_hit_keys)), 4 * min_queries
            )
            carried[client] = merged
    p_values = binomial_tail(
        np.asarray([t[2] for t in tested]),
        np.asarray([t[1] for t in tested]),
        float(calibration["base_rate"]),
        rho=float(calibration["rho"]),
    )
    results = []
    for (code, n_total, x_total, merged), p in zip(tested, p_values.tolist(), strict=True):
        joint, extra, members = epochs.joint(code, float(p), member_ids)
        results.append(BlockResult(
            client_id=str(prepared.clients[code]),
            n=n_total,
            hits=x_total,
            p_value=joint,
            p_per_day=min(1.0, joint * float(calibration["blocks_per_client_day"])),
            query_ids=merged["ids"],
            member_ids=_bounded(sorted(set(merged["members"]) | set(members))),
            extra=extra,
        ))
    now = float(prepared.times.max()) if len(prepared) else 0.0
    sections = {"pending": _prune(carried, now) if len(prepared) else dict(sorted(carried.items()))}
    if histories is not None:
        sections["carried"] = epochs.state(now)
    return results, sections


@dataclass
class _Epochs:
    """The carried test's side of `scan_share`: each client's epoch, updated with the batch, tested with a block."""

    calibration: Mapping[str, Any]
    times: np.ndarray  # per sorted row
    hashes: np.ndarray  # per sorted row: the sketch hash of its unit
    hit_ids: np.ndarray  # per sorted row: the hit's id (member position or unit key), -1 for no hit
    histories: dict[str, Any] | None
    updated: dict[int, History] = field(default_factory=dict)

    @classmethod
    def start(cls, prepared: PreparedBatch, hits: np.ndarray, *, unit_keys: np.ndarray, hit_keys: np.ndarray | None,
              histories: Mapping[str, Any] | None, calibration: Mapping[str, Any]) -> _Epochs:
        if histories is None:
            return cls(calibration, prepared.times, np.zeros(0, np.uint32), np.zeros(0, np.int64), None)
        ids = np.where(hits & (hit_keys >= 0), hit_keys, -1) if hit_keys is not None else np.where(hits, unit_keys, -1)
        return cls(calibration, prepared.times, unit_hashes(unit_keys), ids.astype(np.int64),
                   dict(histories))

    def add(self, code: int, client: str, lo: int, hi: int) -> None:
        """Client `code`'s rows lo:hi of this batch into its epoch."""
        if self.histories is None or hi <= lo:
            return
        ids, times = self.hit_ids[lo:hi], self.times[lo:hi]
        history = update_history(self.histories.get(client), self.hashes[lo:hi], ids[ids >= 0],
                                 first=float(times.min()), last=float(times.max()))
        self.histories[client] = history.to_entry()
        self.updated[code] = history

    def joint(self, code: int, p_block: float, member_ids: np.ndarray | None) -> tuple[float, dict[str, float], list[Any]]:
        """The block's p-value joined with its client's carried test, the carried figures and members hit."""
        history = self.updated.get(code)
        if history is None or not applies(self.calibration):
            return p_block, {}, []
        units, hits = history.units, float(min(len(history.hits), history.units))
        p_carried = float(carried_tail(hits, units, float(self.calibration["base_rate"]),
                                       float(self.calibration["rho_upper"])))
        extra = {"carried_units": round(units, 1), "carried_hits": hits, "carried_days": round(history.days, 2),
                 "carried_p_value": p_carried, "block_p_value": p_block}
        members: list[Any] = []
        if member_ids is not None and p_carried < p_block:
            # Positions in the member index; one stored before the members changed may point past it.
            members = evidence_ids(member_ids[history.hits[history.hits < len(member_ids)]])
        return joint_p(p_block, p_carried), extra, members

    def state(self, now: float) -> dict[str, dict[str, Any]]:
        return prune_histories(self.histories or {}, now)


def calibrate_mean(
    prepared: PreparedBatch, scores: np.ndarray, *, min_queries: int, rows: np.ndarray | None = None,
    unit_keys: np.ndarray | None = None,
) -> dict[str, Any]:
    """Benign per-client means of per-query scores (columns of `scores`, each a rank in [0, 1]).

    Per column: the benign centre and per-query variance, and tau2, the extra between-client
    variance of client means (honest clients serve different customers). `rows` (a mask over
    sorted rows) restricts the fit to held-out queries; `unit_keys` counts each (client, key) once.
    """
    scores = scores if scores.ndim == 2 else scores[:, None]
    fresh = first_of_keys(prepared, unit_keys)
    if rows is not None:
        fresh &= rows
    n = np.bincount(prepared.codes[fresh], minlength=len(prepared.clients))
    enough = n >= min_queries
    centres, variances, tau2 = [], [], []
    for column in scores.T:
        sums = np.bincount(prepared.codes[fresh], weights=column[fresh], minlength=len(prepared.clients))
        means = sums[enough] / n[enough] if enough.any() else np.zeros(0)
        centre = float(column[fresh].mean()) if fresh.any() else 0.5
        variance = float(column[fresh].var()) if fresh.sum() > 1 else 1.0 / 12
        centres.append(centre)
        variances.append(variance)
        tau2.append(fit_mean_dispersion(means, n[enough], unit_variance=variance, centre=centre))
    return {
        "centre": centres,
        "unit_variance": variances,
        "tau2": tau2,
        "blocks_per_client_day": blocks_per_client_day(prepared, n, min_queries),
        "reference_queries": int(len(prepared)),
        "reference_clients": int(len(prepared.clients)),
    }


def scan_mean(
    prepared: PreparedBatch,
    scores: np.ndarray,
    *,
    calibration: Mapping[str, Any],
    sides: tuple[int, ...],
    min_queries: int,
    pending: Mapping[str, Any] | None,
    outlying: np.ndarray,
    unit_keys: np.ndarray | None = None,
) -> tuple[list[BlockResult], dict[str, dict[str, Any]]]:
    """Random-effects z-test of each full block's mean score per column against the benign centre.

    `sides[j]` is +1 when high means suspicious, -1 when low does, 0 for either; the block's
    p-value is the smallest column's, Bonferroni-corrected over columns. `outlying` marks the
    queries worth listing as evidence. `unit_keys` counts each (client, key) once per block (default: each record).
    """
    scores = scores if scores.ndim == 2 else scores[:, None]
    m = scores.shape[1]
    carried: dict[str, dict[str, Any]] = {client: dict(entry) for client, entry in (pending or {}).items()}
    fresh = fresh_rows(prepared, carried, unit_keys)
    seen_keys = prepared.repeat_keys if unit_keys is None else unit_keys
    n_new = np.bincount(prepared.codes[fresh], minlength=len(prepared.clients))
    sum_new = np.stack(
        [
            np.bincount(prepared.codes[fresh], weights=column[fresh], minlength=len(prepared.clients))
            for column in scores.T
        ],
        axis=1,
    )
    last_new = np.maximum.reduceat(prepared.times, prepared.starts[:-1]) if len(prepared) else np.zeros(0)
    outlying = outlying & fresh
    centre = np.asarray(calibration["centre"], dtype=np.float64)
    unit_variance = np.asarray(calibration["unit_variance"], dtype=np.float64)
    tau2 = np.asarray(calibration["tau2"], dtype=np.float64)
    side = np.asarray(sides, dtype=np.float64)
    results = []
    for code, client in enumerate(prepared.clients.tolist()):
        entry = carried.pop(client, {"n": 0, "sums": [0.0] * m, "ids": [], "seen": [], "last": 0.0})
        lo, hi = prepared.starts[code], prepared.starts[code + 1]
        n_total = int(entry["n"]) + int(n_new[code])
        totals = np.asarray(entry["sums"], dtype=np.float64) + sum_new[code]
        ids = _bounded(list(entry["ids"]) + evidence_ids(prepared.query_ids[lo:hi][outlying[lo:hi]]))
        if n_total >= min_queries:
            means = totals / n_total
            z = (means - centre) / np.sqrt(unit_variance / n_total + tau2)
            one_sided = ndtr(-side * z)
            p_columns = np.where(side == 0, normal_two_sided(z), one_sided)
            p = float(min(1.0, p_columns.min() * m))
            results.append(
                BlockResult(
                    client_id=client,
                    n=n_total,
                    hits=0.0,
                    p_value=p,
                    p_per_day=min(1.0, p * float(calibration["blocks_per_client_day"])),
                    query_ids=ids,
                    extra={
                        **{f"mean_{j}": round(float(v), 6) for j, v in enumerate(means)},
                        **{f"z_{j}": round(float(v), 6) for j, v in enumerate(z)},
                    },
                )
            )
        elif n_new[code] or entry["n"]:
            carried[client] = {
                "n": n_total,
                "sums": [float(v) for v in totals],
                "ids": ids,
                "seen": sorted(set(entry["seen"]) | set(seen_keys[lo:hi][fresh[lo:hi]].tolist())),
                "last": float(max(entry["last"], last_new[code])),
            }
    now = float(prepared.times.max()) if len(prepared) else 0.0
    return results, _prune(carried, now) if len(prepared) else dict(sorted(carried.items()))


def carried_led(evidence: Mapping[str, Any]) -> bool:
    """Whether a block finding's evidence was carried over days rather than held in its block."""
    carried = evidence.get("carried_p_value")
    return carried is not None and float(carried) < float(evidence.get("block_p_value", 1.0))


def region_keys(prepared: PreparedBatch, cell_size: float) -> np.ndarray:
    """The keyed cell of each sorted row on one grid: the neighbourhood a share test counts once."""
    return prepared.fingerprints(cell_size=cell_size, n_grids=1)[:, 0]


def block_findings(
    detector: str,
    results: Sequence[BlockResult],
    calibration: Mapping[str, Any],
    evidence: Callable[[BlockResult], dict[str, Any]],
) -> list[Finding]:
    """A finding for each client block whose per-day p-value clears the calibrated false-alarm rate.

    Each carries the detector's own evidence, then what every block test states: its p-value, the
    false-alarm rate it was calibrated to, and the query ids involved.
    """
    threshold = -math.log10(calibration["false_alarm_rate"])
    findings = []
    for result in results:
        score = score_from_p(result.p_per_day)
        if score < threshold:
            continue
        findings.append(Finding(
            detector=detector,
            client_id=result.client_id,
            score=score,
            severity=severity_for(score, threshold),
            evidence={
                **evidence(result),
                "p_value": result.p_value,
                "false_alarm_rate": calibration["false_alarm_rate"],
                "false_alarm_unit": "client-day",
                "query_ids": result.query_ids,
            },
        ))
    return findings
