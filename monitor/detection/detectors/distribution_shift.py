"""Distribution shift: a client whose queries do not look like the model's production traffic.

Shadow-model attacks (Shokri et al. 2017) and data harvesting send synthetic records. Two
per-query ranks against production traffic, both uniform for benign queries: the Mahalanobis
distance (gross shift, off-support values) and how common the query's keyed coarse cell is in
held-out production traffic (a histogram density: per-feature marginal sampling keeps every
marginal right but lands in cells real records rarely occupy). A client's mean ranks are tested
with a random-effects z-test once it has `min_queries` distinct queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from monitor.detection.detectors.base import (
    Detector,
    Finding,
    ModelContext,
    PreparedBatch,
    QueryBatch,
)
from monitor.detection.detectors.client_blocks import block_findings, calibrate_mean, region_keys, scan_mean
from monitor.detection.detectors.fingerprints import quantised_fingerprints
from monitor.detection.detectors.registry import register
from monitor.detection.detectors.wording import as_count, short_value

# Quantiles kept of the reference distances: enough for a rank to within 0.1 %.
N_QUANTILES = 1001
# Cells kept of the production histogram; rarer cells count as empty, in calibration and scans alike.
MAX_HISTOGRAM_CELLS = 20_000
# Distance rank: two-sided (too typical is odd too); cell rank: low means a rare cell.
SIDES = (0, -1)


def _squared_mahalanobis(z: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = z.astype(np.float64) - mean
    return np.einsum("ij,ij->i", centred @ precision, centred)


def _cell_counts(hashes: np.ndarray, cells: np.ndarray, counts: np.ndarray) -> np.ndarray:
    position = np.minimum(np.searchsorted(cells, hashes), max(len(cells) - 1, 0))
    if len(cells) == 0:
        return np.zeros(len(hashes))
    return np.where(cells[position] == hashes, counts[position], 0).astype(np.float64)


def _mid_rank(values: np.ndarray, levels: np.ndarray, below: np.ndarray, at: np.ndarray) -> np.ndarray:
    """P(C < c) + P(C = c) / 2 under the reference distribution of C: mean 1/2 for benign queries."""
    position = np.searchsorted(levels, values, side="left")
    exact = (position < len(levels)) & (levels[np.minimum(position, len(levels) - 1)] == values)
    safe = np.minimum(position, len(levels) - 1)
    below_value = np.where(position < len(levels), below[safe], 1.0)
    return np.where(exact, below_value + at[safe] / 2, below_value)


@register
@dataclass(frozen=True)
class DistributionShiftDetector(Detector):
    name: ClassVar[str] = "distribution_shift"
    title: ClassVar[str] = "Queries unlike production traffic"

    false_alarm_rate: float = 1e-3  # per benign client-day
    min_queries: int = 100  # the mean ranks need this many distinct queries before they say anything
    cell_size: float = 2.0  # histogram cells, in standard deviations: coarse enough to estimate density
    # A client's mean counts each 0.5-sigma neighbourhood once: an honest client re-scoring a customer with one value
    # edited sends near-copies whose ranks are the customer's, and counting them as independent queries made blocks
    # of a few dozen customers look like hundreds (measured: 7 benign clients in 2,000 client-days flagged at 1e-4).
    unit_cell_size: float = 0.5

    def describe(self, evidence: Mapping[str, Any]) -> str:
        benign = evidence.get("benign_mean_ranks") or []
        return (f"{as_count(evidence.get('n_queries'))} queries unlike production traffic: mean distance rank "
                f"{short_value(evidence.get('mean_distance_rank'))}"
                + (f" where benign clients average {short_value(benign[0])}" if benign else "") + ".")

    def _hashes(self, prepared: PreparedBatch) -> np.ndarray:
        return prepared.fingerprints(cell_size=self.cell_size, n_grids=1)[:, 0]

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        z = prepared.z.astype(np.float64)
        d = context.n_features
        mean = z.mean(axis=0) if len(z) else np.zeros(d)
        covariance = np.atleast_2d(np.cov(z, rowvar=False)) if len(z) > 1 else np.eye(d)
        precision = np.linalg.pinv(covariance + 1e-6 * np.eye(d))
        distances = _squared_mahalanobis(z, mean, precision)
        quantiles = (
            np.quantile(distances, np.linspace(0, 1, N_QUANTILES)) if len(z) else np.zeros(N_QUANTILES)
        )

        # The histogram counts half the distinct records and judges the other half, so that a
        # reference query is never scored against a count that includes itself, and so that it
        # measures density rather than remembering which people production traffic contains.
        hashes = self._hashes(prepared)
        # Split by a 0.5-sigma cell, not by record: a slightly edited re-send of a record must fall
        # on the same side as the record, or the judged half would find itself in the histogram.
        split = quantised_fingerprints(
            prepared.z[prepared.record_rows],
            key=context.fingerprint_key,
            cell_size=0.5,
            n_grids=1,
            purpose="split",
        )[:, 0]
        builder_record = split % 2 == 0
        builders = prepared.record_rows[builder_record]
        cells, counts = np.unique(hashes[builders], return_counts=True)
        top = np.lexsort((cells, -counts))[:MAX_HISTOGRAM_CELLS]
        cells, counts = cells[top], counts[top]
        order = np.argsort(cells)
        cells, counts = cells[order], counts[order]
        judged = ~builder_record[prepared.row_record]
        observed = _cell_counts(hashes[judged & prepared.first_seen], cells, counts)
        levels, frequency = np.unique(observed, return_counts=True)
        share = frequency / max(1, frequency.sum())
        calibration: dict[str, Any] = {
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "min_queries": self.min_queries,
            "cell_size": self.cell_size,
            "unit_cell_size": self.unit_cell_size,
            # Aggregates of production traffic only: mean, precision, distance quantiles, and a
            # histogram of keyed cells (meaningless without the model's key).
            "mean": mean.tolist(),
            "precision": precision.tolist(),
            "distance_quantiles": quantiles.tolist(),
            "histogram_cells": [int(h) for h in cells],
            "histogram_counts": [int(c) for c in counts],
            "count_levels": levels.tolist(),
            "count_below": (np.cumsum(share) - share).tolist(),
            "count_at": share.tolist(),
        }
        ranks = self._ranks(prepared, calibration)
        calibration.update(calibrate_mean(prepared, ranks, min_queries=self.min_queries, rows=judged,
                                          unit_keys=region_keys(prepared, self.unit_cell_size)))
        return calibration

    def _ranks(self, prepared: PreparedBatch, calibration: Mapping[str, Any]) -> np.ndarray:
        quantiles = np.asarray(calibration["distance_quantiles"])
        distances = _squared_mahalanobis(
            prepared.z, np.asarray(calibration["mean"]), np.asarray(calibration["precision"])
        )
        # Interpolated rank in [0, 1]: the share of reference queries closer to the centre.
        distance_rank = np.interp(distances, quantiles, np.linspace(0, 1, len(quantiles)))
        counts = _cell_counts(
            prepared.fingerprints(cell_size=float(calibration["cell_size"]), n_grids=1)[:, 0],
            np.asarray(calibration["histogram_cells"], dtype=np.int64),
            np.asarray(calibration["histogram_counts"], dtype=np.int64),
        )
        cell_rank = _mid_rank(
            counts,
            np.asarray(calibration["count_levels"]),
            np.asarray(calibration["count_below"]),
            np.asarray(calibration["count_at"]),
        )
        return np.stack([distance_rank, cell_rank], axis=1)

    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        calibration = self.calibration(context)
        prepared = context.prepared(batch)
        ranks = self._ranks(prepared, calibration)
        results, pending = scan_mean(
            prepared,
            ranks,
            calibration=calibration,
            sides=SIDES,
            min_queries=int(calibration["min_queries"]),
            pending=(state or {}).get("pending"),
            # Evidence: queries beyond the reference's 99th distance percentile or in empty cells.
            outlying=(ranks[:, 0] >= 0.99) | (ranks[:, 1] <= float(calibration["count_at"][0]) / 2 + 1e-12),
            unit_keys=region_keys(prepared, float(calibration.get("unit_cell_size", self.unit_cell_size))),
        )
        findings = block_findings(self.name, results, calibration, lambda result: {
            "n_queries": result.n,
            "mean_distance_rank": result.extra["mean_0"],
            "mean_cell_rank": result.extra["mean_1"],
            "benign_mean_ranks": [round(c, 6) for c in calibration["centre"]],
            "z_distance": result.extra["z_0"],
            "z_cell": result.extra["z_1"],
        })
        return findings, {"pending": pending}
