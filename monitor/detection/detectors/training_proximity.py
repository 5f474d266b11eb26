"""Training proximity: a client whose queries land on member records far more often than benign traffic.

An attacker testing candidate records (Shokri et al. 2017; any score-based MIA) must send the
records themselves, so a share of its queries coincides with training rows. A query "lands on" a
member when it is closer to it than half that member's distance to its nearest fellow member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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
from monitor.detection.detectors.wording import as_count, short_value


@register
@dataclass(frozen=True)
class TrainingProximityDetector(Detector):
    name: ClassVar[str] = "training_proximity"
    title: ClassVar[str] = "Queries matching training records"

    false_alarm_rate: float = 1e-3  # per benign client-day
    radius_fraction: float = 0.5  # of each member's nearest-member distance
    min_queries: int = 30  # distinct regions a client must visit before its block is tested
    # Evidence unit: a region is a 1-sigma cell; a hit is a distinct member. An honest client
    # editing one customer who resembles a member hits that one member, however often it asks.
    region_cell_size: float = 1.0

    def describe(self, evidence: Mapping[str, Any]) -> str:
        members = evidence.get("member_ids") or []
        if carried_led(evidence):
            lead = (f"Over {short_value(evidence.get('carried_days'))} days queried "
                    f"{as_count(evidence.get('carried_hits'))} training records in about "
                    f"{as_count(round(float(evidence.get('carried_units') or 0)))} distinct regions")
        else:
            lead = (f"Queried {as_count(evidence.get('n_members_hit'))} training records in "
                    f"{as_count(evidence.get('n_regions'))} distinct regions "
                    f"({short_value(evidence.get('members_hit_per_region'))} per region")
        return (lead + ("; " if not carried_led(evidence) else " (") + "benign clients "
                f"{short_value(evidence.get('base_rate'))} per region)"
                + (f", e.g. member ids {short_value(members[:5])}" if members else "") + ".")

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        matches = prepared.member_matches(self.radius_fraction)
        if matches is None:
            return {
                "settings": self.settings(),
                "applicable": False,
                "reason": "no member records were given",
            }
        # Only aggregates of the benign traffic are kept: the member index itself lives in memory.
        share = calibrate_share(
            prepared,
            matches[0],
            min_queries=self.min_queries,
            unit_keys=region_keys(prepared, self.region_cell_size),
            hit_keys=matches[1],
        )
        return {
            "applicable": True,
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "radius_fraction": self.radius_fraction,
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
        radius_fraction = float(calibration["radius_fraction"])
        index = context.member_index(radius_fraction=radius_fraction)
        matches = prepared.member_matches(radius_fraction)
        if index is None or matches is None:
            # Calibrated with members, scanned without: nothing to compare against this time.
            return [], dict(state or {})
        matched, positions = matches
        results, sections = scan_share(
            prepared,
            matched,
            calibration=calibration,
            min_queries=int(calibration["min_queries"]),
            pending=(state or {}).get("pending"),
            histories=(state or {}).get("carried") or {},
            unit_keys=region_keys(prepared, float(calibration["region_cell_size"])),
            hit_keys=positions,
            member_ids=index.member_ids,
        )
        findings = block_findings(self.name, results, calibration, lambda result: {
            "n_regions": result.n,
            "n_members_hit": int(result.hits),
            "members_hit_per_region": round(result.hits / result.n, 6),
            "base_rate": round(calibration["base_rate"], 6),
            "member_ids": result.member_ids,
            **result.extra,
        })
        return findings, sections
