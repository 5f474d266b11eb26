"""Boundary probing: a client whose queries pile up where the model hesitates between two classes.

Boundary-distance attacks (HopSkipJump, Chen et al. 2020; used for membership by Li & Zhang 2021
and Choquette-Choo et al. 2021) bisect towards the decision boundary, so most of their queries
get a small top-1/top-2 margin; benign traffic does so at the model's own base rate.
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
    QueryBatch,
)
from monitor.detection.detectors.client_blocks import (
    block_findings,
    calibrate_share,
    carried_led,
    region_keys,
    scan_share,
)
from monitor.detection.detectors.registry import register
from monitor.detection.detectors.wording import as_count, as_share, short_value


def top_two_margin(outputs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 output per row (1.0 for a single-class output)."""
    if outputs.shape[1] < 2:
        return np.ones(len(outputs), dtype=np.float32)
    top = np.partition(outputs, outputs.shape[1] - 2, axis=1)[:, -2:]
    return (top[:, 1] - top[:, 0]).astype(np.float32)


@register
@dataclass(frozen=True)
class BoundaryProbingDetector(Detector):
    name: ClassVar[str] = "boundary_probing"
    title: ClassVar[str] = "Queries piling up at the decision boundary"

    false_alarm_rate: float = 1e-3  # per benign client-day
    base_share: float = 0.05  # the margin threshold is the benign 5th percentile of margins
    min_queries: int = 30  # distinct regions a client must visit before its block is tested
    # Evidence unit: a 1-sigma cell with at least one hesitant answer. An honest client re-scoring
    # one borderline customer with small edits is one borderline region, not fifty.
    region_cell_size: float = 1.0

    def describe(self, evidence: Mapping[str, Any]) -> str:
        near, regions = evidence.get("n_regions_near_boundary"), evidence.get("n_regions")
        if carried_led(evidence):
            return (f"Over {short_value(evidence.get('carried_days'))} days, {as_count(evidence.get('carried_hits'))} "
                    f"of about {as_count(round(float(evidence.get('carried_units') or 0)))} distinct query regions "
                    f"sat at the decision boundary (benign clients {as_share(evidence.get('base_rate'))}).")
        return (f"{as_count(near)} of {as_count(regions)} distinct query regions sat at the decision boundary "
                f"({as_share(evidence.get('share_near_boundary'))}; benign clients "
                f"{as_share(evidence.get('base_rate'))}).")

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        margins = top_two_margin(prepared.outputs)
        # One-hot outputs (label-only policy) carry no margin: the detector stands down and says why.
        if len(margins) == 0 or float(np.quantile(margins, self.base_share)) >= 1.0 - 1e-6:
            return {
                "settings": self.settings(),
                "applicable": False,
                "reason": "outputs carry no margin (labels only)",
            }
        margin_threshold = float(np.quantile(margins, self.base_share))
        hits = margins <= margin_threshold
        share = calibrate_share(
            prepared,
            hits,
            min_queries=self.min_queries,
            unit_keys=region_keys(prepared, self.region_cell_size),
        )
        return {
            "applicable": True,
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "margin_threshold": margin_threshold,
            "region_cell_size": self.region_cell_size,
            "min_queries": self.min_queries,
            **share,
        }

    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        calibration = self.calibration(context)
        if not calibration.get("applicable", True):
            return [], dict(state or {})
        prepared = context.prepared(batch)
        hits = top_two_margin(prepared.outputs) <= calibration["margin_threshold"]
        results, sections = scan_share(
            prepared,
            hits,
            calibration=calibration,
            min_queries=int(calibration["min_queries"]),
            pending=(state or {}).get("pending"),
            histories=(state or {}).get("carried") or {},
            unit_keys=region_keys(prepared, float(calibration["region_cell_size"])),
        )
        findings = block_findings(self.name, results, calibration, lambda result: {
            "n_regions": result.n,
            "n_regions_near_boundary": int(result.hits),
            "share_near_boundary": round(result.hits / result.n, 6),
            "base_rate": round(calibration["base_rate"], 6),
            "margin_threshold": round(calibration["margin_threshold"], 6),
            **result.extra,
        })
        return findings, sections
