"""What an audit returns: per-attack figures, the headline, the what-if table and recommendations, JSON-ready."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audits.attacks.exposure import MemberExposure
from audits.attacks.metrics import AttackMetrics, ClassSlice, Headline, HeadlineRate
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
    # Every evaluation record's score, members then non-members, each in its records' key order (the privacy gate
    # compares two models on the same records); not serialised.
    scores: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

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
    # The content keys of the evaluated members and non-members, in the order of each attack's `scores`.
    record_keys: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def attack(self, name: str) -> AttackResult:
        return next(result for result in self.attacks if result.name == name)

    def rate_at(self, fpr: float) -> HeadlineRate | None:
        """The headline's TPR at `fpr` (one of metrics.FPR_TARGETS) with its interval and attack; None without one."""
        return self.headline.tpr_at_fpr.get(fpr) if self.headline is not None else None

    # What run_attacks recorded in `config`, read here so no caller needs to know that dict's layout.
    @property
    def skipped(self) -> dict[str, str]:
        """The attacks asked for that could not run, each with the reason."""
        return dict((self.config.get("coverage") or {}).get("skipped") or {})

    @property
    def n_nonmembers(self) -> int:
        """Non-members evaluated: what an FPR measured at a threshold rests on."""
        return int(self.config.get("n_nonmembers") or 0)

    @property
    def target_train_size(self) -> int:
        """Records the target trained on (the members given to the audit)."""
        return int(self.config.get("target_train_size") or 0)

    @property
    def reference_train_sizes(self) -> dict[str, int]:
        """Per reference kind, the records each reference model trained on."""
        return dict(self.config.get("reference_train_size") or {})

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
