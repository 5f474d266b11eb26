"""What an audit returns: per-attack figures, the headline, the what-if table and recommendations, JSON-ready."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audits.attacks.exposure import MemberExposure
from audits.attacks.metrics import AttackMetrics, ClassSlice, Headline
from audits.attacks.recommendations import Recommendation
from audits.attacks.reference import ReferenceModels
from audits.attacks.whatif import WhatIfRow


@dataclass(frozen=True)
class AttackResult:
    name: str
    metrics: AttackMetrics
    per_class: tuple[ClassSlice, ...]
    top_exposed: tuple[int | str, ...]  # member ids (or indices into the members array), most exposed first
    seconds: float  # scoring time under this policy (reference training is timed separately)
    details: dict[str, Any] = field(default_factory=dict)
    # Every evaluated member's rank (the main policy's run only); stored encrypted beside the run, not in its JSON.
    exposure: MemberExposure | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.metrics.to_dict(), "per_class": [s.to_dict() for s in self.per_class],
                "top_exposed": list(self.top_exposed), "seconds": self.seconds, "details": self.details}


@dataclass(frozen=True)
class AuditResult:
    attacks: tuple[AttackResult, ...]
    headline: Headline | None
    what_if: tuple[WhatIfRow, ...]
    recommendations: tuple[Recommendation, ...]
    accuracy: dict[str, float]  # train (members) and test (non-members) accuracy under the audited policy
    config: dict[str, Any]
    notes: tuple[str, ...]
    timings: dict[str, float]
    # Fitted reference models, for reuse by a later audit of the same data; not serialised.
    references: dict[str, ReferenceModels] = field(default_factory=dict, repr=False, compare=False)

    def attack(self, name: str) -> AttackResult:
        return next(result for result in self.attacks if result.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attacks": [result.to_dict() for result in self.attacks],
            "headline": self.headline.to_dict() if self.headline else None,
            "what_if": [row.to_dict() for row in self.what_if],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "accuracy": self.accuracy,
            "config": self.config,
            "notes": list(self.notes),
            "timings": self.timings,
        }
