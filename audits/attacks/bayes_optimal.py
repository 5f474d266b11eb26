"""BASE (Lassila et al. 2025, "Practical Bayes-optimal membership inference attacks"): the Bayes-optimal score
of Sablayrolles et al. 2019 for a loss-tempered model posterior, approximated with the offline reference models.

With ℓ = −log p_y (the cross-entropy) and temperature T the score is

    s_T(x) = −ℓ(θ, x)/T − log mean_k exp(−ℓ(θ_k, x)/T) = (1/T)·log p_θ(x) − log mean_k p_k(x)^(1/T),

the target's tempered likelihood against the reference models' average, with no population records z. The
average is over models that did and did not train on x; offline there are no IN models, and each OUT model's p
stands in for an IN one through RMIA's line p_in ≈ a·p + (1 − a) (Zarifzadeh et al. 2024, §4.2), so

    s_T(x) = (1/T)·log p_θ(x) − log mean_k ½(p_k^(1/T) + (a·p_k + 1 − a)^(1/T)).

At T = 1 the average is RMIA's Pr(x) and the score RMIA's log-ratio; RMIA's fraction of z beaten is increasing in
that ratio, so the two order records identically at every a (the equivalence the paper shows, at T = 1). T → ∞
compares with a geometric mean, T → 0 with the most confident model. `a` is RMIA's (calibrate_a) and T is chosen
on the reference models (calibrate_temperature), never on the target.

Measured on Adult (random forest, 4 reference models on the population pool only, 10,000 records a side; with the
unevaluated members in the pool too, bench/audit.py's table has the current figures): T = 1 reads RMIA's 14.8 % TPR@1%FPR;
T = 2 trades it for the 0.1 % point (13.5 % at 1 %, 4.2 % → 5.2 % at 0.1 %); with OUT models only (no IN
stand-in, the average of Sablayrolles et al. 2019) BASE read 8.1 % at every T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp

from audits.attacks.base import Attack, AttackInputs, AttackScores, Family, ReferenceKind
from audits.attacks.catalogue import register
from audits.attacks.reference import Scorer, choose_on_references, tpr_at_calibration_fpr
from audits.attacks.rmia import RmiaSettings, calibrate_a
from audits.attacks.scores import true_class_proba

# Candidate temperatures, a factor of two apart around RMIA's T = 1.
TEMPERATURE_GRID: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def base_scores(*, target_p: np.ndarray, reference_p: np.ndarray, a: float, in_mask: np.ndarray | None = None,
                temperature: float = 1.0, clip: float) -> np.ndarray:
    """s_T(x) for true-class probabilities: target (n,), reference (K, n), all floored at `clip`.

    Entries IN per `in_mask` are left out of the average (offline: each record's OUT models, each with its IN
    stand-in); a record no model left OUT averages over all of them.
    """
    if temperature <= 0:
        raise ValueError("the temperature must be positive")
    log_target = np.log(np.clip(np.asarray(target_p, dtype=np.float64), clip, 1.0))
    log_reference = np.log(np.clip(np.atleast_2d(np.asarray(reference_p, dtype=np.float64)), clip, 1.0))
    mask = np.zeros(log_reference.shape, bool) if in_mask is None else np.asarray(in_mask, bool)
    if mask.shape != log_reference.shape or log_reference.shape[1] != len(log_target):
        raise ValueError("reference probabilities and in_mask must be (K, n) for n targets")
    out = ~mask
    out[:, ~out.any(axis=0)] = True
    log_in = np.log(a * np.exp(log_reference) + (1.0 - a))
    tempered = np.where(out, log_reference / temperature, -np.inf)
    tempered_in = np.where(out, log_in / temperature, -np.inf)
    log_mean = logsumexp(np.concatenate([tempered, tempered_in]), axis=0) - np.log(2 * out.sum(axis=0))
    return log_target / temperature - log_mean


def calibrate_temperature(*, pool_p: np.ndarray, pool_in: np.ndarray, a: float, clip: float,
                          grid: tuple[float, ...] = TEMPERATURE_GRID) -> tuple[float, dict[float, float]]:
    """Attack each reference model with the others on its own pool, whose IN/OUT it knows, and keep the T with
    the best mean TPR at 1 % FPR (ties: the T closest to 1, RMIA's). Returns (T, {T: TPR}); the target is never
    involved."""
    pool_p, pool_in = np.asarray(pool_p, dtype=np.float64), np.asarray(pool_in, bool)

    def scorer_for(temperature: float) -> Scorer:
        return lambda j, others, usable: base_scores(
            target_p=pool_p[j, usable], reference_p=pool_p[others][:, usable], in_mask=pool_in[others][:, usable],
            a=a, temperature=temperature, clip=clip)

    return choose_on_references(grid, pool_in, scorer_for, tpr_at_calibration_fpr, default=1.0,
                                prefer=lambda t: abs(np.log(t)))


@dataclass(frozen=True)
class BaseSettings:
    """An audit's `AuditConfig.base`."""

    temperature: float | None = None  # None: calibrated on the reference models (calibrate_temperature)


@register
@dataclass(frozen=True)
class BaseAttack(Attack):
    name: ClassVar[str] = "base"
    label: ClassVar[str] = "BASE (Lassila et al. 2025)"
    family: ClassVar[Family] = "reference"
    note: ClassVar[str] = ("The Bayes-optimal score: the target's tempered likelihood against the reference models' "
                           "average; RMIA's cost, no population z.")
    rank: ClassVar[int] = 65
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ("offline",)

    base: BaseSettings = BaseSettings()
    rmia: RmiaSettings = RmiaSettings()  # its `a`, calibrated as RMIA calibrates it when None

    def score(self, inputs: AttackInputs) -> AttackScores:
        details: dict[str, Any] = {}
        records, pool_in = inputs.records, inputs.reference_models("offline").pool_in
        pool = np.stack([true_class_proba(p, records.pool_y) for p in inputs.offline_pool])
        a = self.rmia.a
        if a is None:
            pz = np.stack([true_class_proba(p, records.z_y) for p in inputs.offline_z])
            a, _ = calibrate_a(pool_p=pool, pool_in=pool_in, reference_pz=pz, gamma=self.rmia.gamma, clip=inputs.clip)
        temperature = self.base.temperature
        if temperature is None:
            temperature, tprs = calibrate_temperature(pool_p=pool, pool_in=pool_in, a=a, clip=inputs.clip)
            details["temperature_calibration_tpr"] = {f"{k:g}": v for k, v in tprs.items()}
        reference = np.stack([true_class_proba(p, inputs.y) for p in inputs.offline])
        scores = base_scores(target_p=true_class_proba(inputs.target, inputs.y), reference_p=reference, a=a,
                             temperature=temperature, clip=inputs.clip)
        details.update({"a": a, "temperature": temperature, "n_out_models": len(reference)})
        return AttackScores(scores, details, recorded={"a": a, "temperature": temperature})
