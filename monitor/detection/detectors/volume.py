"""Volume: bursts of queries far above both the model's population of clients and the client's own past.

Label-only attacks send 2r+1 to thousands of queries per target (Choquette-Choo et al. 2021) and
boundary attacks thousands more (Chen et al. 2020): volume is their cheapest footprint, though
alone not proof of an attack, so its findings start one severity level lower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.stats import poisson

from monitor.detection.detectors.base import (
    SECONDS_PER_DAY,
    STATE_HORIZON_SECONDS,
    Detector,
    Finding,
    ModelContext,
    PreparedBatch,
    QueryBatch,
    evidence_ids,
    lower_severity,
    score_from_p,
    severity_for,
)
from monitor.detection.detectors.registry import register
from monitor.detection.detectors.significance import CountTail
from monitor.detection.detectors.wording import as_count, as_time

# A client's baseline remembers about this many windows (a running mean, not a full history).
BASELINE_MEMORY_WINDOWS = 1000
STATE_MAX_AGE_SECONDS = STATE_HORIZON_SECONDS


@dataclass
class _Windows:
    """Non-empty (client, window) cells of a batch, in client-then-time order."""

    codes: np.ndarray
    index: np.ndarray  # window number: floor(timestamp / window_seconds)
    counts: np.ndarray
    starts: np.ndarray  # first sorted row of each cell


def _windows(prepared: PreparedBatch, window_seconds: float) -> _Windows:
    index = np.floor(prepared.times / window_seconds).astype(np.int64)
    if len(index) == 0:
        empty = np.zeros(0, np.int64)
        return _Windows(empty, empty, empty, empty)
    change = np.ones(len(index), bool)
    change[1:] = (prepared.codes[1:] != prepared.codes[:-1]) | (index[1:] != index[:-1])
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(index)))
    return _Windows(prepared.codes[starts], index[starts], counts, starts)


@register
@dataclass(frozen=True)
class VolumeDetector(Detector):
    name: ClassVar[str] = "volume"
    title: ClassVar[str] = "Query volume far above baseline"

    false_alarm_rate: float = 1e-3  # per benign client-day
    window_seconds: float = 600.0
    # A known client is flagged only beyond this multiple of its own mean per window (diurnal
    # peaks run 2-3x the daily mean), on top of clearing the population threshold.
    baseline_factor: float = 3.0
    min_baseline_windows: int = 6

    def describe(self, evidence: Mapping[str, Any]) -> str:
        minutes = (evidence.get("window_seconds") or 600) / 60
        text = (f"Sent {as_count(evidence.get('peak_window_count'))} queries in {minutes:g} minutes from "
                f"{as_time(evidence.get('peak_window_start'))}")
        baseline = evidence.get("baseline_mean_per_window") or 0
        if baseline:
            text += f", {evidence.get('peak_window_count', 0) / baseline:,.0f}× its own usual {baseline:.3g} per window"
        threshold = evidence.get("population_threshold")
        if threshold:
            text += f"; benign clients stay under {as_count(threshold)}"
        return text + "."

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        windows = _windows(prepared, self.window_seconds)
        tail = CountTail.fit(windows.counts)
        return {
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "window_seconds": self.window_seconds,
            "baseline_factor": self.baseline_factor,
            "min_baseline_windows": self.min_baseline_windows,
            "population_median": float(np.median(windows.counts)) if len(windows.counts) else 1.0,
            "tail": tail.to_dict(),
        }

    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        calibration = self.calibration(context)
        window_seconds = float(calibration["window_seconds"])
        windows_per_day = SECONDS_PER_DAY / window_seconds
        tail = CountTail.from_dict(calibration["tail"])
        prepared = context.prepared(batch)
        clients_state: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in ((state or {}).get("clients") or {}).items()
        }
        cells = _windows(prepared, window_seconds)
        counts = cells.counts.copy()

        # A window cut by the previous scan continues here: add what that scan already counted.
        first_of_client = np.ones(len(cells.codes), bool)
        first_of_client[1:] = cells.codes[1:] != cells.codes[:-1]
        baseline_mean = np.zeros(len(prepared.clients))
        baseline_windows = np.zeros(len(prepared.clients), np.int64)
        for position in np.flatnonzero(first_of_client):
            carried = clients_state.get(str(prepared.clients[cells.codes[position]]))
            if carried is None:
                continue
            code = cells.codes[position]
            baseline_mean[code], baseline_windows[code] = carried["mean"], carried["windows"]
            if carried["window"] == cells.index[position]:
                counts[position] += int(carried["count"])

        p_population = tail.sf(counts)
        code_of_cell = cells.codes
        known = baseline_windows[code_of_cell] >= int(calibration["min_baseline_windows"])
        expected = float(calibration["baseline_factor"]) * np.maximum(
            baseline_mean[code_of_cell], float(calibration["population_median"])
        )
        p_own = np.where(known, poisson.sf(counts - 1, expected), 0.0)
        # Both must be surprising: a steady heavy client and a light client's modest burst are benign.
        p_window = np.maximum(p_population, p_own)
        p_per_day = np.minimum(1.0, p_window * windows_per_day)

        threshold = -math.log10(calibration["false_alarm_rate"])
        findings = []
        if len(code_of_cell):
            group_starts = np.flatnonzero(first_of_client)
            best = np.minimum.reduceat(p_per_day, group_starts)
        else:
            group_starts, best = np.zeros(0, np.int64), np.zeros(0)
        for group in np.flatnonzero(best <= calibration["false_alarm_rate"]).tolist():
            lo = group_starts[group]
            hi = group_starts[group + 1] if group + 1 < len(group_starts) else len(code_of_cell)
            in_client = np.arange(lo, hi)
            code = int(code_of_cell[lo])
            worst = int(in_client[np.argmin(p_per_day[in_client])])
            score = score_from_p(float(p_per_day[worst]))
            if score < threshold:
                continue
            row_lo = cells.starts[worst]
            row_hi = cells.starts[worst + 1] if worst + 1 < len(cells.starts) else len(prepared)
            alpha_window = calibration["false_alarm_rate"] / windows_per_day
            findings.append(
                Finding(
                    detector=self.name,
                    client_id=str(prepared.clients[code]),
                    score=score,
                    severity=lower_severity(severity_for(score, threshold)),
                    evidence={
                        "n_queries": int(prepared.counts[code]),
                        "n_windows": int(len(in_client)),
                        "n_windows_flagged": int(
                            (p_per_day[in_client] <= calibration["false_alarm_rate"]).sum()
                        ),
                        "peak_window_count": int(counts[worst]),
                        "peak_window_start": float(cells.index[worst] * window_seconds),
                        "window_seconds": window_seconds,
                        "population_threshold": tail.threshold(alpha_window),
                        "baseline_mean_per_window": round(float(baseline_mean[code]), 6),
                        "p_value": float(p_window[worst]),
                        "false_alarm_rate": calibration["false_alarm_rate"],
                        "false_alarm_unit": "client-day",
                        "query_ids": evidence_ids(prepared.query_ids[row_lo:row_hi]),
                    },
                )
            )
        return findings, {"clients": self._next_state(prepared, cells, counts, clients_state, baseline_mean)}

    @staticmethod
    def _next_state(
        prepared: PreparedBatch,
        cells: _Windows,
        counts: np.ndarray,
        clients_state: dict[str, dict[str, Any]],
        baseline_mean: np.ndarray,
    ) -> dict[str, dict[str, Any]]:
        """Closed windows feed the running mean; each client's last window stays open for the next scan."""
        if len(cells.codes) == 0:
            return dict(sorted(clients_state.items()))
        last_of_client = np.ones(len(cells.codes), bool)
        last_of_client[:-1] = cells.codes[1:] != cells.codes[:-1]
        closed = ~last_of_client
        n_closed = np.bincount(cells.codes[closed], minlength=len(prepared.clients))
        sum_closed = np.bincount(cells.codes[closed], weights=counts[closed], minlength=len(prepared.clients))
        last_time = float(prepared.times.max())
        for position in np.flatnonzero(last_of_client).tolist():
            code = int(cells.codes[position])
            client = str(prepared.clients[code])
            carried = clients_state.get(client, {"mean": 0.0, "windows": 0, "window": None, "count": 0})
            windows, mean = int(carried["windows"]), float(carried["mean"])
            total_closed, closed_count = float(sum_closed[code]), int(n_closed[code])
            # The window left open by the previous scan closed in this one unless it continues here.
            first = int(np.searchsorted(cells.codes, code))
            if carried["window"] is not None and carried["window"] != int(cells.index[first]):
                total_closed += float(carried["count"])
                closed_count += 1
            if closed_count:
                weight = min(windows, BASELINE_MEMORY_WINDOWS)
                mean = (mean * weight + total_closed) / (weight + closed_count)
                windows += closed_count
            clients_state[client] = {
                "window": int(cells.index[position]),
                "count": int(counts[position]),
                "mean": round(mean, 9),
                "windows": windows,
                "last": float(prepared.times[prepared.starts[code + 1] - 1]),
            }
        kept = {k: v for k, v in clients_state.items() if last_time - v["last"] <= STATE_MAX_AGE_SECONDS}
        return dict(sorted(kept.items()))
