"""Near-duplicate sweep: many queries from one client within a small distance of one point.

Label-only attacks query noisy or augmented copies of each target (Choquette-Choo et al. 2021;
Li & Zhang 2021). Two signals: a target-sweep counter over keyed fingerprints (how many of a
client's queries share one grid cell within T; Blacklight, Li et al. 2022), and a k-NN density
check over the client's recent history (Chen, Carlini & Wagner 2019): a query is dense when at
least k of the client's previous `history_size` queries within T lie within radius epsilon.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from monitor.detection.detectors.base import (
    SECONDS_PER_DAY,
    Detector,
    Finding,
    MemberIndex,
    ModelContext,
    PreparedBatch,
    QueryBatch,
    evidence_ids,
    score_from_p,
    severity_for,
)
from monitor.detection.detectors.client_blocks import calibrate_share, scan_share
from monitor.detection.detectors.fingerprints import mix64, unique_first
from monitor.detection.detectors.registry import register
from monitor.detection.detectors.significance import CountTail
from monitor.detection.detectors.wording import as_count

# Rows per block of the banded distance computation: large enough for BLAS, small enough for cache.
BLOCK_ROWS = 128
# Sweeps whose member targets are reported, per finding.
MAX_REPORTED_CELLS = 10


def causal_neighbour_counts(
    z: np.ndarray,
    codes: np.ndarray,
    times: np.ndarray,
    *,
    radius: float,
    repeat_distance: float,
    lookback: int,
    horizon: float,
) -> np.ndarray:
    """For rows sorted by client then time: how many of the same client's previous `lookback` rows,
    no older than `horizon` seconds, lie within `radius` but further than `repeat_distance`.

    Rows closer than `repeat_distance` are the same record sent again (honest re-scoring), not a
    probe around it. Vectorised over fixed blocks of the sorted array rather than per client, so
    a million rows cost the same from ten clients or a million: a band of width `lookback`.
    """
    n = len(z)
    counts = np.zeros(n, dtype=np.int32)
    if n < 2 or lookback < 1:
        return counts
    z = np.ascontiguousarray(z, dtype=np.float32)
    squared = np.einsum("ij,ij->i", z, z)
    r2, q2 = np.float32(radius * radius), np.float32(repeat_distance * repeat_distance)
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(n, lo + BLOCK_ROWS)
        ref_lo = max(0, lo - lookback)
        gap = np.arange(lo, hi)[:, None] - np.arange(ref_lo, hi)[None, :]
        d2 = squared[lo:hi, None] + squared[None, ref_lo:hi] - 2.0 * (z[lo:hi] @ z[ref_lo:hi].T)
        close = (
            (d2 <= r2)
            & (d2 > q2)
            & (gap > 0)
            & (gap <= lookback)
            & (codes[lo:hi, None] == codes[None, ref_lo:hi])
            & (times[lo:hi, None] - times[None, ref_lo:hi] <= horizon)
        )
        counts[lo:hi] = close.sum(axis=1)
    return counts


def _encode_rows(rows: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(rows, dtype="<f2").tobytes()).decode("ascii")


def _decode_rows(text: str, d: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32).reshape(-1, d)


def _encode_entries(phase: np.ndarray, bucket: np.ndarray, grid: np.ndarray, coarse: np.ndarray,
                    fine: np.ndarray) -> str:
    """A client's carried cell entries, packed: (bucket << 8 | grid << 1 | phase, coarse, fine) as int64."""
    packed = np.column_stack([(bucket.astype(np.int64) << 8) | (grid.astype(np.int64) << 1) | phase, coarse, fine])
    return base64.b64encode(np.ascontiguousarray(packed, dtype="<i8").tobytes()).decode("ascii")


def _decode_entries(entry: Mapping[str, Any]) -> np.ndarray:
    """(n, 5) rows of (phase, bucket, grid, coarse, fine); reads the older list form too."""
    if "entries" in entry:
        return np.asarray(entry["entries"], dtype=np.int64).reshape(-1, 5)
    packed = np.frombuffer(base64.b64decode(entry.get("cells", "")), dtype="<i8").astype(np.int64).reshape(-1, 3)
    head = packed[:, 0]
    return np.column_stack([head & 1, head >> 8, (head >> 1) & 0x7F, packed[:, 1], packed[:, 2]])


@dataclass
class _Cells:
    """Distinct records per fingerprint cell and (client, phase, bucket) group, carried state included."""

    group_keys: np.ndarray  # unique ((client code * 2 + phase) << 32) | (bucket - bucket_base), sorted
    group_max: np.ndarray  # most distinct records in one cell of the group
    cell_keys: np.ndarray  # unique cell keys, sorted
    cell_counts: np.ndarray  # distinct records per cell
    cell_group: np.ndarray  # group index of each cell
    entry_cell: np.ndarray  # distinct (cell, record) entries: their cell index ...
    entry_grid: np.ndarray
    entry_coarse: np.ndarray
    entry_fine: np.ndarray
    bucket_base: int

    def client_of_group(self) -> np.ndarray:
        return (self.group_keys >> 32) // 2

    def stable_keys(self) -> np.ndarray:
        """A key per cell from its bucket, phase, grid and coarse fingerprint: unlike `cell_keys`, which hash
        the client's code in this batch, the same whichever other clients share the batch."""
        grid = np.zeros(len(self.cell_keys), np.int64)
        coarse = np.zeros(len(self.cell_keys), np.int64)
        grid[self.entry_cell], coarse[self.entry_cell] = self.entry_grid, self.entry_coarse
        groups = self.group_keys[self.cell_group]
        bucket = ((groups & 0xFFFFFFFF) + self.bucket_base) * 2 + (groups >> 32) % 2
        return mix64(mix64(bucket.view(np.uint64)) ^ ((grid.view(np.uint64) << np.uint64(52)) ^ coarse.view(np.uint64)))


def _cell_keys(groups: np.ndarray, grids: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    return mix64(
        mix64(groups.view(np.uint64)) ^ ((grids.view(np.uint64) << np.uint64(52)) ^ coarse.view(np.uint64))
    )


@register
@dataclass(frozen=True)
class NearDuplicateSweepDetector(Detector):
    name: ClassVar[str] = "near_duplicate_sweep"
    title: ClassVar[str] = "Near-duplicate sweep around records (label-only attack pattern)"

    false_alarm_rate: float = 1e-3  # per benign client-day
    # Fingerprint grid in standard deviations: keeps about 60 % of 0.1-sigma noise copies together.
    cell_size: float = 1.0
    n_grids: int = 4
    window_seconds: float = 3600.0  # T: sweeps are counted within this long
    history_size: int = 64  # previous queries per client the density check looks at
    radius_per_sqrt_d: float = 0.2  # epsilon = this * sqrt(d): 0.2 sigma per feature on average
    repeat_distance: float = 0.1  # closer than this is the same record again, not a probe
    k: int = 4  # neighbours within epsilon that make a query dense
    min_queries: int = 30
    max_entries_per_client: int = 256  # fingerprint entries carried per client between scans
    member_radius_fraction: float = 0.5

    def describe(self, evidence: Mapping[str, Any]) -> str:
        minutes = (evidence.get("window_seconds") or 3600) / 60
        text = (f"Sent {as_count(evidence.get('max_records_near_one_point'))} distinct records around one point "
                f"within {minutes:g} minutes (benign clients stay under {as_count(evidence.get('sweep_threshold'))}), "
                f"in {as_count(evidence.get('n_swept_cells'))} such neighbourhoods")
        if evidence.get("n_dense_queries"):
            tested = evidence.get("n_records_tested_for_density")
            text += (f"; {as_count(evidence['n_dense_queries'])} of {as_count(tested)} records had close neighbours "
                     "among its own recent queries")
        return text + "."

    # ---- fingerprint counter -------------------------------------------------------------------

    def _buckets(self, times: np.ndarray) -> np.ndarray:
        """(n, 2) bucket numbers: two bucketings offset by T/2, so a sweep shorter than T/2 lies whole in one."""
        return np.stack(
            [np.floor(times / self.window_seconds), np.floor(times / self.window_seconds + 0.5)], axis=1
        ).astype(np.int64)

    def _count_cells(self, prepared: PreparedBatch, carried: Mapping[str, Any]) -> _Cells:
        coarse = prepared.fingerprints(cell_size=self.cell_size, n_grids=self.n_grids)
        grids = coarse.shape[1]
        parts = [
            np.column_stack([np.full(len(entries), code, np.int64), entries])
            for client, code in prepared.client_positions(carried).items()
            for entries in [_decode_entries(carried[client])]
        ]
        extra = np.concatenate(parts) if parts else np.zeros((0, 6), np.int64)
        bucket = self._buckets(prepared.times)
        bucket_base = int(min(bucket.min(initial=0), extra[:, 2].min(initial=0)))
        group_parts, grid_parts, coarse_parts, fine_parts = [], [], [], []
        for phase in (0, 1):
            group = ((prepared.codes * 2 + phase) << 32) | (bucket[:, phase] - bucket_base)
            # One entry per distinct record per group: a record re-sent within the bucket counts once
            # (Blacklight counts matching queries; we count distinct records, because honest clients
            # re-send the same customer).
            _, rows, _, _ = unique_first(
                mix64(mix64(group.view(np.uint64)) ^ prepared.row_record.astype(np.uint64))
            )
            group_parts.append(np.repeat(group[rows], grids))
            grid_parts.append(np.tile(np.arange(grids, dtype=np.int64), len(rows)))
            coarse_parts.append(coarse[rows].reshape(-1))
            fine_parts.append(np.repeat(prepared.repeat_keys[rows], grids))
        groups = np.concatenate(
            [*group_parts, ((extra[:, 0] * 2 + extra[:, 1]) << 32) | (extra[:, 2] - bucket_base)]
        )
        grid_ids = np.concatenate([*grid_parts, extra[:, 3]])
        coarse_all = np.concatenate([*coarse_parts, extra[:, 4]])
        fine_all = np.concatenate([*fine_parts, extra[:, 5]])
        cell_of_entry = _cell_keys(groups, grid_ids, coarse_all)
        if len(extra):
            # Entries carried from the previous scan may repeat records seen again now.
            _, distinct, _, _ = unique_first(mix64(cell_of_entry ^ fine_all.view(np.uint64)))
        else:
            distinct = np.arange(len(groups))
        cell_keys, first, entry_cell, cell_counts = unique_first(cell_of_entry[distinct])
        group_keys, cell_group = np.unique(groups[distinct][first], return_inverse=True)
        group_max = np.zeros(len(group_keys), dtype=np.int64)
        np.maximum.at(group_max, cell_group, cell_counts)
        return _Cells(
            group_keys=group_keys,
            group_max=group_max,
            cell_keys=cell_keys,
            cell_counts=cell_counts,
            cell_group=cell_group,
            entry_cell=entry_cell,
            entry_grid=grid_ids[distinct],
            entry_coarse=coarse_all[distinct],
            entry_fine=fine_all[distinct],
            bucket_base=bucket_base,
        )

    def _row_cells(self, prepared: PreparedBatch, cells: _Cells, lo: int, hi: int) -> np.ndarray:
        """(rows, 2 * n_grids) cell index of sorted rows lo:hi, -1 where the cell is not counted."""
        coarse = prepared.fingerprints(cell_size=self.cell_size, n_grids=self.n_grids)[lo:hi]
        bucket = self._buckets(prepared.times[lo:hi])
        keys = []
        for phase in (0, 1):
            group = ((prepared.codes[lo:hi] * 2 + phase) << 32) | (bucket[:, phase] - cells.bucket_base)
            for grid in range(coarse.shape[1]):
                keys.append(_cell_keys(group, np.full(hi - lo, grid, np.int64), coarse[:, grid]))
        row_keys = np.stack(keys, axis=1)
        position = np.minimum(np.searchsorted(cells.cell_keys, row_keys), len(cells.cell_keys) - 1)
        return np.where(cells.cell_keys[position] == row_keys, position, -1)

    # ---- density check -------------------------------------------------------------------------

    def _radius(self, d: int) -> float:
        return self.radius_per_sqrt_d * math.sqrt(d)

    def _dense(
        self, prepared: PreparedBatch, history: Mapping[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Dense flags of the batch rows (sorted order) and the history to carry to the next scan.

        Only each client's distinct records take part: a re-sent record is neither a probe nor
        a reason to forget older history.
        """
        d = prepared.z.shape[1]
        fresh = np.flatnonzero(prepared.first_seen)
        positions = prepared.client_positions(history)
        hist_z = [_decode_rows(history[client]["z"], d) for client in positions]
        hist_t = [np.asarray(history[client]["t"], dtype=np.float64) for client in positions]
        hist_codes = [
            np.full(len(t), code, dtype=np.int64) for code, t in zip(positions.values(), hist_t, strict=True)
        ]
        n_hist = sum(len(t) for t in hist_t)
        z = np.concatenate([*hist_z, prepared.z[fresh]]) if n_hist else prepared.z[fresh]
        times = np.concatenate([*hist_t, prepared.times[fresh]]) if n_hist else prepared.times[fresh]
        codes = np.concatenate([*hist_codes, prepared.codes[fresh]]) if n_hist else prepared.codes[fresh]
        is_batch = np.concatenate([np.zeros(n_hist, bool), np.ones(len(fresh), bool)])
        # History first within each client, then the batch in its own (time, query id) order.
        order = np.lexsort((np.arange(len(z)), is_batch, codes))
        z, times, codes, is_batch = z[order], times[order], codes[order], is_batch[order]
        counts = causal_neighbour_counts(
            z,
            codes,
            times,
            radius=self._radius(d),
            repeat_distance=self.repeat_distance,
            lookback=self.history_size,
            horizon=self.window_seconds,
        )
        dense = np.zeros(len(prepared), bool)
        dense[fresh] = counts[is_batch] >= self.k

        new_history: dict[str, Any] = {}
        latest = float(prepared.times.max()) if len(prepared) else 0.0
        if len(prepared):
            ends = np.searchsorted(codes, np.arange(len(prepared.clients) + 1))
            for code, client in enumerate(prepared.clients.tolist()):
                lo, hi = ends[code], ends[code + 1]
                lo = max(lo, hi - self.history_size)
                recent = times[lo:hi] >= latest - self.window_seconds
                if recent.any():
                    new_history[client] = {
                        "z": _encode_rows(z[lo:hi][recent]),
                        "t": [float(t) for t in times[lo:hi][recent]],
                    }
        # Clients absent from this batch keep their history while it is still within T.
        for client, entry in history.items():
            if client not in new_history and entry["t"] and entry["t"][-1] >= latest - self.window_seconds:
                new_history[client] = entry
        return dense, dict(sorted(new_history.items()))

    # ---- detector API --------------------------------------------------------------------------

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        cells = self._count_cells(prepared, {})
        dense, _ = self._dense(prepared, {})
        return {
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "min_queries": self.min_queries,
            "radius": self._radius(context.n_features),
            "counter_tail": CountTail.fit(cells.group_max).to_dict(),
            "buckets_per_client_day": 2 * SECONDS_PER_DAY / self.window_seconds,
            "density": calibrate_share(prepared, dense, min_queries=self.min_queries),
        }

    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        calibration = self.calibration(context)
        state = state or {}
        prepared = context.prepared(batch)
        far = float(calibration["false_alarm_rate"])
        tail = CountTail.from_dict(calibration["counter_tail"])
        buckets_per_day = float(calibration["buckets_per_client_day"])
        alpha_bucket = far / buckets_per_day / 2
        sweep_threshold = tail.threshold(alpha_bucket)

        carried = state.get("counter") or {}
        cells = self._count_cells(prepared, carried)
        group_client = cells.client_of_group()
        p_group = np.minimum(1.0, tail.sf(cells.group_max) * buckets_per_day)
        p_counter = np.ones(len(prepared.clients))
        np.minimum.at(p_counter, group_client, p_group)
        max_count = np.zeros(len(prepared.clients), dtype=np.int64)
        np.maximum.at(max_count, group_client, cells.group_max)

        dense, history = self._dense(prepared, state.get("history") or {})
        results, sections = scan_share(
            prepared,
            dense,
            calibration=calibration["density"],
            min_queries=int(calibration["min_queries"]),
            pending=state.get("pending"),
        )
        density = {result.client_id: result for result in results}
        index = context.member_index(radius_fraction=self.member_radius_fraction)
        threshold = -math.log10(far)

        findings = []
        stable_keys = None  # orders a client's swept cells whatever else is in the batch; made when first needed
        for code, client in enumerate(prepared.clients.tolist()):
            block = density.get(client)
            p_density = block.p_per_day if block is not None else 1.0
            # Two tests per client: Bonferroni doubles the smaller p-value.
            p_client = min(1.0, 2.0 * min(float(p_counter[code]), p_density))
            score = score_from_p(p_client)
            if score < threshold:
                continue
            lo, hi = prepared.starts[code], prepared.starts[code + 1]
            row_cells = self._row_cells(prepared, cells, lo, hi)
            swept = (row_cells >= 0) & (cells.cell_counts[row_cells] >= sweep_threshold)
            strong = np.unique(row_cells[swept])
            stable_keys = cells.stable_keys() if stable_keys is None else stable_keys
            strong = strong[np.lexsort((stable_keys[strong], -cells.cell_counts[strong]))]
            sweep_rows = np.flatnonzero(swept.any(axis=1))
            findings.append(
                Finding(
                    detector=self.name,
                    client_id=client,
                    score=score,
                    severity=severity_for(score, threshold),
                    evidence={
                        "n_queries": int(prepared.counts[code]),
                        "max_records_near_one_point": int(max_count[code]),
                        "sweep_threshold": sweep_threshold,
                        "n_swept_cells": int(len(strong)),
                        "window_seconds": self.window_seconds,
                        "counter_p_value": float(p_counter[code]),
                        "n_dense_queries": int(block.hits) if block else None,
                        "n_records_tested_for_density": block.n if block else None,
                        "dense_base_rate": round(calibration["density"]["base_rate"], 6),
                        "density_p_value": block.p_value if block else None,
                        "false_alarm_rate": far,
                        "false_alarm_unit": "client-day",
                        "query_ids": evidence_ids(prepared.query_ids[lo:hi][sweep_rows])
                        if len(sweep_rows)
                        else (block.query_ids if block else []),
                        "member_ids": self._sweep_members(prepared, row_cells, strong, lo, hi, index),
                    },
                )
            )
        new_state = {
            "counter": self._carry_entries(prepared, cells, carried),
            "history": history,
            "pending": sections["pending"],
        }
        return findings, new_state

    @staticmethod
    def _sweep_members(
        prepared: PreparedBatch,
        row_cells: np.ndarray,
        strong: np.ndarray,
        lo: int,
        hi: int,
        index: MemberIndex | None,
    ) -> list[Any]:
        """Member records at the centre of the client's sweeps: the centroid of each swept cell, in memory only."""
        if index is None or len(strong) == 0:
            return []
        z = prepared.z[lo:hi]
        centroids = [z[(row_cells == cell).any(axis=1)].mean(axis=0) for cell in strong[:MAX_REPORTED_CELLS]]
        matched, positions = index.match(np.asarray(centroids, dtype=np.float32))
        return evidence_ids(index.member_ids[positions[matched]])

    def _carry_entries(
        self, prepared: PreparedBatch, cells: _Cells, carried: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Distinct records of each client's busiest cells in its current buckets, for the next scan."""
        out: dict[str, Any] = {}
        latest = float(prepared.times.max()) if len(prepared) else 0.0
        if len(prepared):
            client_phase = cells.group_keys >> 32
            # The current bucket of each (client, phase) is its latest group.
            current = np.r_[client_phase[1:] != client_phase[:-1], True]
            keep = np.flatnonzero(current[cells.cell_group[cells.entry_cell]])
            group = cells.cell_group[cells.entry_cell[keep]]
            client = cells.client_of_group()[group]
            count = cells.cell_counts[cells.entry_cell[keep]]
            order = np.lexsort(
                (cells.entry_fine[keep], cells.cell_keys[cells.entry_cell[keep]], -count, client)
            )
            keep, group, client = keep[order], group[order], client[order]
            phase = client_phase[group] % 2
            bucket = (cells.group_keys[group] & 0xFFFFFFFF) + cells.bucket_base
            bounds = np.searchsorted(client, np.arange(len(prepared.clients) + 1))
            last_time = prepared.times[prepared.starts[1:] - 1]
            for code, name in enumerate(prepared.clients.tolist()):
                chosen = slice(
                    bounds[code], min(bounds[code + 1], bounds[code] + self.max_entries_per_client)
                )
                if last_time[code] < latest - self.window_seconds:
                    continue
                out[name] = {
                    "cells": _encode_entries(
                        phase[chosen], bucket[chosen], cells.entry_grid[keep[chosen]],
                        cells.entry_coarse[keep[chosen]], cells.entry_fine[keep[chosen]],
                    ),
                    "last": float(last_time[code]),
                }
        for name, entry in carried.items():
            if name not in out and entry["last"] >= latest - self.window_seconds:
                out[name] = entry
        return dict(sorted(out.items()))
