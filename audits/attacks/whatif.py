"""What-if table: the same attacks against the model under each output policy (ML04 "model obfuscation"),
beside the accuracy each policy costs."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audits.attacks.metrics import AttackMetrics
from audits.attacks.records import keyed_order
from monitor.platform.output_policy import OutputPolicy

STANDARD_POLICIES: tuple[str, ...] = ("full", "round:2", "round:1", "label", "noise:0.05")
WHAT_IF_FPR = 0.01


def policy_clip(policy: OutputPolicy, clip: float) -> float:
    """Rounding to K decimals turns 0 into a bucket of width 10^-K: clip at half of it, as for a vote."""
    if policy.kind == "round" and policy.decimals is not None:
        return min(max(clip, 0.5 * 10.0 ** -policy.decimals), 0.49)
    return clip


def apply_policy(policy: OutputPolicy, proba: np.ndarray, *, keys: np.ndarray, seed: int, stream: int = 0
                 ) -> np.ndarray:
    """What a caller would see, computed by the gateway's own code (OutputPolicy.apply).

    Noise is drawn once per distinct record, in an order fixed by the records' content keys, so no figure
    depends on array order and duplicate records get the same answer (as if it had been cached).
    """
    proba = np.asarray(proba, dtype=np.float64)
    if policy.kind != "noise" or not len(proba):
        return policy.apply(proba)
    unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = keyed_order(unique_keys, seed=seed, purpose=f"noise-{stream}")
    rng = np.random.default_rng([seed, stream, 0x6E6F697365])
    noisy_unique = np.empty((len(unique_keys), proba.shape[1]))
    noisy_unique[order] = policy.apply(proba[first[order]], rng=rng)
    return noisy_unique[inverse.reshape(-1)]


@dataclass(frozen=True)
class PolicyOutcome:
    accuracy: float  # on the held-out non-members, under the policy
    train_accuracy: float  # on the members, under the policy
    results: Sequence[tuple[str, AttackMetrics]]


@dataclass(frozen=True)
class WhatIfRow:
    policy: str
    accuracy: float
    train_accuracy: float
    accuracy_drop: float  # against the first "full" row (or the first row): the utility this policy costs
    tpr_at_1pct_fpr: float | None
    tpr_attack: str | None
    auc: float | None
    auc_attack: str | None
    attacks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "accuracy": self.accuracy, "train_accuracy": self.train_accuracy,
                "accuracy_drop": self.accuracy_drop, "tpr_at_fpr": {"0.01": self.tpr_at_1pct_fpr},
                "tpr_attack": self.tpr_attack, "auc": self.auc, "auc_attack": self.auc_attack,
                "attacks": list(self.attacks)}


def what_if(*, policies: Sequence[str | OutputPolicy],
            run_under_policy: Callable[[OutputPolicy], PolicyOutcome]) -> list[WhatIfRow]:
    """Run `run_under_policy` for each policy and keep the strongest attack's TPR@1%FPR and AUC."""
    parsed = [p if isinstance(p, OutputPolicy) else OutputPolicy.parse(p) for p in policies]
    outcomes = [(policy, run_under_policy(policy)) for policy in parsed]
    baseline = next((o for p, o in outcomes if p.kind == "full"), outcomes[0][1] if outcomes else None)
    rows = []
    for policy, outcome in outcomes:
        results = list(outcome.results)
        best_tpr = max(results, key=lambda r: r[1].tpr_at_fpr[WHAT_IF_FPR].value) if results else None
        best_auc = max(results, key=lambda r: r[1].auc) if results else None
        rows.append(WhatIfRow(
            policy=str(policy), accuracy=outcome.accuracy, train_accuracy=outcome.train_accuracy,
            accuracy_drop=(baseline.accuracy - outcome.accuracy) if baseline else 0.0,
            tpr_at_1pct_fpr=best_tpr[1].tpr_at_fpr[WHAT_IF_FPR].value if best_tpr else None,
            tpr_attack=best_tpr[0] if best_tpr else None,
            auc=best_auc[1].auc if best_auc else None, auc_attack=best_auc[0] if best_auc else None,
            attacks=tuple(name for name, _ in results),
        ))
    return rows
