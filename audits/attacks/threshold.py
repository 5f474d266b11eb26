"""Threshold attacks on the target's own outputs, no reference models: loss (Yeom et al. 2018),
confidence (Salem et al. 2019) and modified entropy (Song & Mittal 2021)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from audits.attacks.base import Attack, AttackInputs, AttackScores, Family
from audits.attacks.catalogue import register
from audits.attacks.scores import DEFAULT_CLIP, log_true_proba, logit_max_confidence


def loss_scores(proba: np.ndarray, y: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """−cross-entropy = log p_y: members were fitted, so their loss is lower."""
    return log_true_proba(proba, y, clip=clip)


def confidence_scores(proba: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Logit of the top-class probability. Needs no label, so it differs from loss (whose rank order equals
    that of the true-class confidence Song & Mittal call "confidence")."""
    return logit_max_confidence(proba, clip=clip)


def modified_entropy_scores(proba: np.ndarray, y: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """−Mentr (Song & Mittal 2021, eq. 9): Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i).

    Unlike plain entropy it grows when the model is confidently wrong, so it uses the label as loss does
    and penalises mass on every wrong class, not only the true class's shortfall.
    """
    proba = np.clip(np.asarray(proba, dtype=np.float64), clip, 1.0 - clip)
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(y))
    p_true = proba[rows, y]
    wrong = -proba * np.log1p(-proba)
    wrong[rows, y] = 0.0
    mentr = -(1.0 - p_true) * np.log(p_true) + wrong.sum(axis=1)
    return -mentr


@register
@dataclass(frozen=True)
class LossAttack(Attack):
    name: ClassVar[str] = "loss"
    label: ClassVar[str] = "Loss threshold (Yeom et al. 2018)"
    family: ClassVar[Family] = "threshold"
    note: ClassVar[str] = "Members were fitted, so their loss is lower; needs the target's outputs only."
    rank: ClassVar[int] = 10

    def score(self, inputs: AttackInputs) -> AttackScores:
        return AttackScores(loss_scores(inputs.target, inputs.y, clip=inputs.clip))


@register
@dataclass(frozen=True)
class ConfidenceAttack(Attack):
    name: ClassVar[str] = "confidence"
    label: ClassVar[str] = "Confidence threshold"
    family: ClassVar[Family] = "threshold"
    note: ClassVar[str] = "Members get more confident answers; needs no label, only the target's outputs."
    rank: ClassVar[int] = 20

    def score(self, inputs: AttackInputs) -> AttackScores:
        return AttackScores(confidence_scores(inputs.target, clip=inputs.clip))


@register
@dataclass(frozen=True)
class ModifiedEntropyAttack(Attack):
    name: ClassVar[str] = "modified_entropy"
    label: ClassVar[str] = "Modified entropy (Song & Mittal 2021)"
    family: ClassVar[Family] = "threshold"
    note: ClassVar[str] = "Like loss, but also penalises confident mass on every wrong class; target's outputs only."
    rank: ClassVar[int] = 30

    def score(self, inputs: AttackInputs) -> AttackScores:
        return AttackScores(modified_entropy_scores(inputs.target, inputs.y, clip=inputs.clip))
