"""Quantile-regression membership inference (Bertran et al. 2023, "Scalable membership inference attacks via
quantile regression"): no reference models. A regressor learns, from population records the target never trained
on, what score the target gives a non-member with these features and this label; a record scoring far above that
is a member. It needs the target's answers only, so it runs for remote endpoints and models whose estimator cannot
be cloned, at the cost of one gradient-boosting fit.

We use the paper's Gaussian variant: one regressor for the non-member score's mean given (x, y), one for its
spread (mean absolute residual × √(π/2)), and the attack score is the record's z-score, which orders records for
every false-positive rate at once (the pinball-loss variant fits one quantile, i.e. one FPR, per regressor)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from audits.attacks.base import Attack, AttackInputs, AttackScores, Family
from audits.attacks.catalogue import register
from audits.attacks.scores import logit_confidence

MIN_POOL_RECORDS = 200
SPREAD_FLOOR = 1e-3


def _design(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.hstack([np.asarray(X, dtype=np.float64), np.eye(n_classes)[np.asarray(y, dtype=np.int64)]])


@register
@dataclass(frozen=True)
class QuantileRegressionAttack(Attack):
    name: ClassVar[str] = "quantile"
    label: ClassVar[str] = "Quantile regression (Bertran et al. 2023)"
    family: ClassVar[Family] = "regression"
    note: ClassVar[str] = ("Learns each record's non-member score from population data, no reference models: the "
                           "screening attack for remote and ONNX models.")
    rank: ClassVar[int] = 80
    needs_target_pool: ClassVar[bool] = True
    max_iter: int = 200
    seed_offset: int = 7

    def score(self, inputs: AttackInputs) -> AttackScores:
        records = inputs.records
        # Population records only: the members that also train reference models are not non-members.
        pool_X, pool_y = records.population_pool
        if len(pool_X) < MIN_POOL_RECORDS:
            raise ValueError(f"the quantile attack needs at least {MIN_POOL_RECORDS} population records")
        n_classes = inputs.target.shape[1]
        pool_scores = logit_confidence(inputs.target_pool, pool_y, clip=inputs.clip)
        design = _design(pool_X, pool_y, n_classes)
        # Two halves of the pool: the spread is fitted on residuals the mean model did not train on.
        half = np.arange(len(design)) % 2 == 0
        mean_model = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=inputs.seed + self.seed_offset)
        mean_model.fit(design[half], pool_scores[half])
        residual = np.abs(pool_scores[~half] - mean_model.predict(design[~half]))
        spread_model = HistGradientBoostingRegressor(max_iter=self.max_iter // 2,
                                                     random_state=inputs.seed + self.seed_offset + 1)
        spread_model.fit(design[~half], residual)
        target_design = _design(records.X, records.y, n_classes)
        scores = logit_confidence(inputs.target, records.y, clip=inputs.clip)
        spread = np.maximum(spread_model.predict(target_design) * math.sqrt(math.pi / 2), SPREAD_FLOOR)
        return AttackScores((scores - mean_model.predict(target_design)) / spread,
                            details={"pool_records": int(len(design)), "mean_fit_records": int(half.sum())})
