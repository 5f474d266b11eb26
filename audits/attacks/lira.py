"""LiRA (Carlini et al. 2022): a Gaussian per record on the logit-scaled confidence phi under reference
models that did not (OUT) and did (IN) train on it; the target's phi is scored against them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from scipy.special import digamma, polygamma
from scipy.stats import norm
from scipy.stats import t as student_t

from audits.attacks.base import Attack, AttackInputs, AttackScores, Family, ReferenceKind
from audits.attacks.catalogue import register
from audits.attacks.reference import Scorer, choose_on_references, tpr_at_calibration_fpr
from audits.attacks.scores import logit_confidence

Variance = Literal["global", "per_record"]
# Per-record σ from a handful of models is noisy and hits 0 where every model gives the same clipped phi;
# floor it at this fraction of the pooled σ so one lucky record cannot take an infinite score.
PER_RECORD_SIGMA_FLOOR = 0.1
# Candidate clips for phi. Coarser clips merge the near-unanimous votes of a forest, whose differences are
# mostly noise; which clip is best is measured on the reference models (calibrate_clip), never the target.
CLIP_GRID: tuple[float, ...] = (1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1)


def _masked_stats(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-record mean, variance (ddof 1) and count over the masked entries, and the pooled
    within-record standard deviation."""
    count = mask.sum(axis=0)
    total = np.where(mask, phi, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        squares = np.where(mask, (phi - mean) ** 2, 0.0).sum(axis=0)
        var = squares / (count - 1)
    dof = int(np.sum(np.maximum(count - 1, 0)))
    # Pooled within-record σ (not the spread of all values, which also counts how records differ from
    # each other): it is the noise a single record's phi shows from model to model.
    # Summed in sorted order: the same σ to the last bit whatever order the records come in (a σ one bit
    # apart can turn two near-equal scores into a tie, and the figures with it).
    pooled = float(np.sqrt(np.sum(np.sort(squares[count > 1])) / dof)) if dof > 0 else 1.0
    return mean, var, count, max(pooled, 1e-12)


def _sigma(var: np.ndarray, count: np.ndarray, pooled: float, variance: Variance) -> np.ndarray:
    if variance == "global":
        return np.full(len(var), pooled)
    floor = PER_RECORD_SIGMA_FLOOR * pooled
    return np.where(count > 1, np.sqrt(np.maximum(np.nan_to_num(var, nan=0.0), floor**2)), pooled)


def _check(target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    target_phi = np.asarray(target_phi, dtype=np.float64)
    reference_phi = np.atleast_2d(np.asarray(reference_phi, dtype=np.float64))
    if reference_phi.shape[1] != len(target_phi):
        raise ValueError(f"reference phi {reference_phi.shape} does not match {len(target_phi)} targets")
    mask = np.zeros(reference_phi.shape, dtype=bool) if in_mask is None else np.asarray(in_mask, dtype=bool)
    if mask.shape != reference_phi.shape:
        raise ValueError("in_mask must have the shape of reference_phi")
    return target_phi, reference_phi, mask


def lira_offline(*, target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray | None = None,
                 variance: Variance = "global") -> np.ndarray:
    """One-sided offline test: z = (phi − μ_out) / σ_out, higher = more likely a member.

    The paper's offline score is the one-sided p-value Pr[N(μ_out, σ_out²) < phi] (§IV-C); z is the same
    order with no saturation at 1, so records far in the tail stay apart. Entries IN per `in_mask` are
    ignored; a record no model left OUT falls back to the mean over all OUT entries.
    """
    target_phi, reference_phi, mask = _check(target_phi, reference_phi, in_mask)
    out = ~mask
    if not out.any():
        raise ValueError("offline LiRA needs OUT reference models")
    mean, var, count, pooled = _masked_stats(reference_phi, out)
    mean = np.where(count > 0, mean, reference_phi[out].mean())
    return (target_phi - mean) / _sigma(var, count, pooled, variance)


def _log_normal_pdf(x: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma)


def lira_online(*, target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray,
                variance: Variance = "global") -> np.ndarray:
    """Online test: log N(phi; μ_in, σ_in²) − log N(phi; μ_out, σ_out²) (§IV-B, eq. 3 in log form).

    A record with no IN (or no OUT) model borrows the average IN−OUT shift, so no record is dropped.
    """
    target_phi, reference_phi, mask = _check(target_phi, reference_phi, in_mask)
    if not mask.any() or mask.all():
        raise ValueError("online LiRA needs both IN and OUT reference models")
    mean_in, var_in, count_in, pooled_in = _masked_stats(reference_phi, mask)
    mean_out, var_out, count_out, pooled_out = _masked_stats(reference_phi, ~mask)
    both = (count_in > 0) & (count_out > 0)
    shift = float(np.mean(mean_in[both] - mean_out[both])) if both.any() else 0.0
    mean_in = np.where(count_in > 0, mean_in, mean_out + shift)
    mean_out = np.where(count_out > 0, mean_out, mean_in - shift)
    sigma_in = _sigma(var_in, count_in, pooled_in, variance)
    sigma_out = _sigma(var_out, count_out, pooled_out, variance)
    return _log_normal_pdf(target_phi, mean_in, sigma_in) - _log_normal_pdf(target_phi, mean_out, sigma_out)


def _trigamma_inverse(value: float) -> float:
    """x with trigamma(x) = value, by Newton's method from Smyth 2004 (limma), which converges from y = 0.5 + 1/value."""
    y = 0.5 + 1.0 / value
    for _ in range(50):
        tri = float(polygamma(1, y))
        step = tri * (1.0 - tri / value) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def variance_prior(var: np.ndarray, count: np.ndarray, pooled: float) -> tuple[float, float]:
    """Empirical-Bayes prior (d0, s0²) over the records' variances: σ²_i ~ scaled-inverse-χ²(d0, s0²), fitted to the
    log sample variances by moments (Smyth 2004, the limma moderated t; the conjugate normal-inverse-gamma prior of
    Brännvall 2026 with d0 = 2α, s0² = β/α). d0 = inf when the records' variances differ no more than sampling noise.

    A sample variance of exactly 0 means every reference model gave the same clipped phi: the clip hid the spread,
    so those records are left out of the fit (flooring them instead put s0 at a quarter of the pooled σ on Adult and
    cost half the TPR at 1 % FPR).
    """
    usable = (count > 1) & (np.nan_to_num(var, nan=0.0) > 0)
    if usable.sum() < 3:
        return float("inf"), pooled**2
    dof = (count[usable] - 1).astype(np.float64)
    e = np.log(var[usable]) - digamma(dof / 2) + np.log(dof / 2)
    centre = float(e.mean())
    excess = float(np.var(e, ddof=1) - np.mean(polygamma(1, dof / 2)))
    if excess <= 0:
        return float("inf"), float(np.exp(centre))
    d0 = 2.0 * _trigamma_inverse(excess)
    return d0, float(np.exp(centre + digamma(d0 / 2) - np.log(d0 / 2)))


def lira_offline_bayes(*, target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, tuple[float, float]]:
    """Offline LiRA with each record's variance shrunk towards the records' common prior (variance_prior):
    σ̃²_i = (d0·s0² + d_i·s²_i) / (d0 + d_i), d_i = n_i − 1. The score is −log Pr[T > t_i] for the Student-t
    predictive with d0 + d_i degrees of freedom, t_i = (phi − μ_i) / (σ̃_i·√(1 + 1/n_i)) (Brännvall 2026, BaVarIA-t):
    the per-record σ that a handful of models cannot pin down borrows strength from every other record.

    Returns the scores and the prior (d0, s0). Entries IN per `in_mask` are ignored, as in lira_offline.
    """
    target_phi, reference_phi, mask = _check(target_phi, reference_phi, in_mask)
    out = ~mask
    if not out.any():
        raise ValueError("offline LiRA needs OUT reference models")
    mean, var, count, pooled = _masked_stats(reference_phi, out)
    d0, s0_squared = variance_prior(var, count, pooled)
    dof = np.maximum(count - 1, 0).astype(np.float64)
    s2 = np.where(count > 1, np.nan_to_num(var, nan=0.0), 0.0)
    moderated = s0_squared if np.isinf(d0) else (d0 * s0_squared + dof * s2) / (d0 + dof)
    moderated = np.maximum(moderated, (PER_RECORD_SIGMA_FLOOR * pooled) ** 2)
    mean = np.where(count > 0, mean, reference_phi[out].mean())
    t = (target_phi - mean) / np.sqrt(moderated * (1.0 + 1.0 / np.maximum(count, 1)))
    scores = -norm.logsf(t) if np.isinf(d0) else -student_t.logsf(t, df=d0 + dof)
    return scores, (d0, float(np.sqrt(s0_squared)))


def calibrate_clip(*, reference_proba: np.ndarray, y: np.ndarray, in_mask: np.ndarray, base_clip: float,
                   grid: tuple[float, ...] = CLIP_GRID, variance: Variance = "global"
                   ) -> tuple[float, dict[float, float]]:
    """Choose phi's clip the way RMIA chooses `a`: attack each reference model with the others (offline
    LiRA on records whose membership in it is known) and keep the clip with the best mean TPR at 1 % FPR,
    the audit's headline operating point. Candidates are `base_clip` and the coarser grid values.

    `reference_proba` is (K, n, C) on records with IN mask `in_mask` (K, n). Returns (clip, {clip: TPR}).
    """
    proba = np.asarray(reference_proba, dtype=np.float64)
    in_mask = np.asarray(in_mask, dtype=bool)
    candidates = sorted({base_clip, *(c for c in grid if base_clip < c < 0.5)})

    def scorer_for(clip: float) -> Scorer:
        phi = np.stack([logit_confidence(p, y, clip=clip) for p in proba])
        return lambda j, others, usable: lira_offline(target_phi=phi[j, usable], reference_phi=phi[others][:, usable],
                                                      in_mask=in_mask[others][:, usable], variance=variance)

    return choose_on_references(candidates, in_mask, scorer_for, tpr_at_calibration_fpr, default=base_clip)


@dataclass(frozen=True)
class LiraSettings:
    """Shared by both LiRA attacks (an audit's `AuditConfig.lira`)."""

    variance: Variance = "global"
    clip: float | None = None  # phi's clip; None: calibrated on the reference models (calibrate_clip)

    def resolve_clip(self, inputs: AttackInputs, details: dict[str, Any], *, online: bool = False,
                     variance: Variance | None = None) -> float:
        """The clip to use: the set one (never finer than the audit's), or the one that attacks the offline
        models' pool (online: the online models' evaluation records) best; the calibration goes in `details`."""
        if self.clip is not None:
            return max(self.clip, inputs.clip)
        if online:
            # The online models' IN/OUT over the evaluation records is theirs, not the target's: no leak.
            proba, y, in_mask = inputs.online, inputs.y, inputs.reference_models("online").target_in
        else:
            proba, y, in_mask = inputs.offline_pool, inputs.records.pool_y, inputs.reference_models("offline").pool_in
        clip, tprs = calibrate_clip(reference_proba=proba, y=y, in_mask=in_mask, base_clip=inputs.clip,
                                    variance=self.variance if variance is None else variance)
        details["clip_calibration_tpr"] = {f"{k:g}": v for k, v in tprs.items()}
        return clip


@register
@dataclass(frozen=True)
class LiraOfflineAttack(Attack):
    name: ClassVar[str] = "lira_offline"
    label: ClassVar[str] = "LiRA offline (Carlini et al. 2022)"
    family: ClassVar[Family] = "reference"
    note: ClassVar[str] = "The target's confidence against reference models that never saw the record."
    rank: ClassVar[int] = 40
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ("offline",)

    lira: LiraSettings = LiraSettings()

    def score(self, inputs: AttackInputs) -> AttackScores:
        details: dict[str, Any] = {}
        y = inputs.y
        clip = self.lira.resolve_clip(inputs, details)
        reference_phi = np.stack([logit_confidence(p, y, clip=clip) for p in inputs.offline])
        scores = lira_offline(target_phi=logit_confidence(inputs.target, y, clip=clip),
                              reference_phi=reference_phi, variance=self.lira.variance)
        details.update({"variance": self.lira.variance, "n_out_models": len(reference_phi), "clip": clip})
        return AttackScores(scores, details)


@register
@dataclass(frozen=True)
class LiraOnlineAttack(Attack):
    name: ClassVar[str] = "lira_online"
    label: ClassVar[str] = "LiRA online (Carlini et al. 2022)"
    family: ClassVar[Family] = "reference"
    note: ClassVar[str] = "Reference models with and without each record: the strongest LiRA, at twice the training."
    rank: ClassVar[int] = 50
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ("online",)

    lira: LiraSettings = LiraSettings()

    def score(self, inputs: AttackInputs) -> AttackScores:
        details: dict[str, Any] = {}
        y, target_in = inputs.y, inputs.reference_models("online").target_in
        clip = self.lira.resolve_clip(inputs, details, online=True)
        reference_phi = np.stack([logit_confidence(p, y, clip=clip) for p in inputs.online])
        scores = lira_online(target_phi=logit_confidence(inputs.target, y, clip=clip), reference_phi=reference_phi,
                             in_mask=target_in, variance=self.lira.variance)
        details.update({"variance": self.lira.variance, "n_models": len(reference_phi), "clip": clip})
        return AttackScores(scores, details)


@register
@dataclass(frozen=True)
class LiraBayesAttack(Attack):
    name: ClassVar[str] = "lira_bayes"
    label: ClassVar[str] = "LiRA offline, Bayesian variance (Brännvall 2026)"
    family: ClassVar[Family] = "reference"
    note: ClassVar[str] = ("Offline LiRA whose per-record variance borrows strength from every record (empirical-Bayes "
                           "prior): for few reference models.")
    rank: ClassVar[int] = 45
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ("offline",)

    lira: LiraSettings = LiraSettings()

    def score(self, inputs: AttackInputs) -> AttackScores:
        details: dict[str, Any] = {}
        y = inputs.y
        # Its variance model is not one of LiRA's: the clip is chosen with the pooled variance.
        clip = self.lira.resolve_clip(inputs, details, variance="global")
        reference_phi = np.stack([logit_confidence(p, y, clip=clip) for p in inputs.offline])
        scores, (d0, s0) = lira_offline_bayes(target_phi=logit_confidence(inputs.target, y, clip=clip),
                                              reference_phi=reference_phi)
        # d0 = inf (every record's variance is the prior's) is recorded as None: the result is stored as JSON.
        details.update({"prior_dof": None if np.isinf(d0) else d0, "prior_sigma": s0, "n_out_models": len(reference_phi), "clip": clip})
        return AttackScores(scores, details)
