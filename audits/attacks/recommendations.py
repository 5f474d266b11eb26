"""What to do about the leakage an audit measured: regularise, obfuscate outputs, train with DP, or upload more
held-out records before trusting the low-FPR figures."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audits.attacks.metrics import MIN_EXPECTED_FALSE_POSITIVES, Headline
from audits.attacks.whatif import PolicyOutcome, WhatIfRow

# A train/test accuracy gap this large is the overfitting that drives loss-style leakage (Yeom et al. 2018);
# ε_lower ≥ 1 already rules out the ε ≤ 1 budgets common in DP deployments.
GAP_FOR_REGULARISATION = 0.05
EPSILON_FOR_DP = 1.0
OBFUSCATION_MIN_REDUCTION = 0.5  # a policy must at least halve the best TPR@1%FPR ...
OBFUSCATION_MAX_ACCURACY_DROP = 0.01  # ... for at most one point of accuracy


@dataclass(frozen=True)
class Recommendation:
    kind: str  # regularisation | output_obfuscation | differential_privacy | more_data
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "evidence": self.evidence}


def recommend(*, summary: Headline | None, rows: Sequence[WhatIfRow], audited: str, full: PolicyOutcome,
              n_nonmembers: int, estimator: Any | None) -> list[Recommendation]:
    recommendations = []
    gap = full.train_accuracy - full.accuracy
    if gap >= GAP_FOR_REGULARISATION:
        hint = ("limit tree depth or raise min_samples_leaf" if hasattr(estimator, "min_samples_leaf")
                else "add regularisation (weight decay, early stopping, smaller capacity)")
        recommendations.append(Recommendation(
            kind="regularisation",
            message=f"The model is {gap:.1%} more accurate on its training records than on held-out ones; "
                    f"{hint} to close the gap that membership attacks exploit.",
            evidence={"train_accuracy": full.train_accuracy, "test_accuracy": full.accuracy}))
    current = next((row for row in rows if row.policy == audited), None)
    if current is not None and current.tpr_at_1pct_fpr:
        better = [row for row in rows if row.policy != audited and row.tpr_at_1pct_fpr is not None
                  and row.tpr_at_1pct_fpr <= OBFUSCATION_MIN_REDUCTION * current.tpr_at_1pct_fpr
                  and row.accuracy >= current.accuracy - OBFUSCATION_MAX_ACCURACY_DROP]
        if better:
            best = min(better, key=lambda row: (row.tpr_at_1pct_fpr or 0.0, -row.accuracy))
            recommendations.append(Recommendation(
                kind="output_obfuscation",
                message=f"Serving `{best.policy}` instead of `{audited}` cuts the best attack's TPR at 1 % FPR "
                        f"from {current.tpr_at_1pct_fpr:.1%} to {best.tpr_at_1pct_fpr:.1%} at an accuracy cost "
                        f"of {current.accuracy - best.accuracy:+.1%}. Obfuscation hides the signal from callers; "
                        "it does not remove what the model memorised.",
                evidence={"from": current.to_dict(), "to": best.to_dict()}))
    if summary is not None and summary.epsilon_lower >= EPSILON_FOR_DP:
        recommendations.append(Recommendation(
            kind="differential_privacy",
            message=f"The {summary.epsilon_attack} attack proves ε ≥ {summary.epsilon_lower:.2f} (δ = 1e-5): no "
                    "differential-privacy guarantee below that can hold for this model. Train with DP "
                    "(e.g. diffprivlib's models, or DP-SGD) to bound the leakage by construction.",
            evidence={"epsilon_lower": summary.epsilon_lower, "attack": summary.epsilon_attack}))
    if summary is not None and not all(rate.reliable for rate in summary.tpr_at_fpr.values()):
        needed = int(np.ceil(MIN_EXPECTED_FALSE_POSITIVES / min(summary.tpr_at_fpr)))
        recommendations.append(Recommendation(
            kind="more_data",
            message=f"With {n_nonmembers} non-members the lowest-FPR figures rest on fewer than "
                    f"{MIN_EXPECTED_FALSE_POSITIVES:g} possible false positives; upload at least {needed} "
                    "held-out records (and as many members) to measure them.",
            evidence={"n_nonmembers": n_nonmembers, "needed": needed}))
    return recommendations
