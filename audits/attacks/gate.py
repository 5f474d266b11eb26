"""The privacy gate's decision (PURE): does a candidate model leak more than the production model, beyond noise?

Both models are attacked on the same evaluation records, with the same attacks, so they are compared on those
records, pairwise: the statistic at each FPR target is the difference of the two models' headlines (the best attack's
TPR at that FPR, each model's own best), and a paired bootstrap resamples the records — the same members and
non-members for both models and every attack — recomputing both headlines each time. Choosing the best attack
again in every resample carries the choice into the interval, which overlapping per-model intervals do not.

Rule (`decide`): FAIL when, at any FPR target, the one-sided lower confidence bound of candidate − production is
above 0 at level α split over the targets (Bonferroni), or when the candidate breaks the policy's absolute limit;
WARN when the candidate's headline is higher somewhere but not significantly; PASS otherwise; UNDECIDED when either
audit is too weak to judge (its verdict is "inconclusive").
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from audits.attacks.metrics import FPR_TARGETS, roc_curve, tpr_at_fpr

GATE_FPRS = (0.01, 0.001)
DEFAULT_ALPHA = 0.05
DEFAULT_BOOTSTRAP = 1000


class GateVerdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    WARN = "warn"
    FAIL = "fail"
    UNDECIDED = "undecided"

    @property
    def exit_code(self) -> int:
        """What a CI job exits with: 0 pass (a warning too), 1 fail, 2 could not decide."""
        return {GateVerdict.PASS: 0, GateVerdict.WARN: 0, GateVerdict.FAIL: 1, GateVerdict.UNDECIDED: 2}[self]


@dataclass(frozen=True)
class ModelScores:
    """One model's attack scores on the evaluation records: per attack, (member scores, non-member scores), in the
    order of `member_keys` / `nonmember_keys` (records.record_keys), which must be the same for both models."""

    attacks: Mapping[str, tuple[np.ndarray, np.ndarray]]
    member_keys: np.ndarray
    nonmember_keys: np.ndarray


@dataclass(frozen=True)
class Comparison:
    fpr: float
    production: float  # headline TPR at `fpr` (best attack of each model, on all records)
    candidate: float
    production_attack: str
    candidate_attack: str
    difference: float  # candidate − production
    lower: float  # one-sided lower confidence bound of the difference (level 1 − α / len(fprs))
    upper: float  # one-sided upper bound at the same level
    p_value: float  # bootstrap share of resamples where the candidate does not leak more (difference ≤ 0)
    significant: bool  # the candidate leaks more with confidence

    def to_dict(self) -> dict[str, Any]:
        return {"fpr": self.fpr, "production": self.production, "candidate": self.candidate,
                "production_attack": self.production_attack, "candidate_attack": self.candidate_attack,
                "difference": self.difference, "lower": self.lower, "upper": self.upper, "p_value": self.p_value,
                "significant": self.significant}


@dataclass(frozen=True)
class GateResult:
    verdict: GateVerdict
    comparisons: tuple[Comparison, ...]
    alpha: float
    n_bootstrap: int
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": str(self.verdict), "exit_code": self.verdict.exit_code, "alpha": self.alpha,
                "n_bootstrap": self.n_bootstrap, "reasons": list(self.reasons),
                "comparisons": [c.to_dict() for c in self.comparisons]}


def model_scores(result: Any) -> ModelScores:
    """What the gate compares, from an audit's result (attacks.results.AuditResult) of the main output policy."""
    if result.record_keys is None or any(attack.scores is None for attack in result.attacks):
        raise ValueError("the audit result carries no per-record scores (results read back from storage do not)")
    return ModelScores(attacks={attack.name: attack.scores for attack in result.attacks},
                       member_keys=result.record_keys[0], nonmember_keys=result.record_keys[1])


def _headline(attacks: Mapping[str, tuple[np.ndarray, np.ndarray]], members: np.ndarray, nonmembers: np.ndarray,
              fprs: Sequence[float]) -> tuple[np.ndarray, list[str]]:
    """The best attack's TPR at each FPR target on the records at `members` / `nonmembers` (positions)."""
    best = np.full(len(fprs), -1.0)
    names = [""] * len(fprs)
    for name, (member_scores, nonmember_scores) in attacks.items():
        m, n = member_scores[members], nonmember_scores[nonmembers]
        roc = roc_curve(m, n)
        for j, fpr in enumerate(fprs):
            value = tpr_at_fpr(roc, fpr, n_members=len(m), n_nonmembers=len(n)).value
            if value > best[j]:
                best[j], names[j] = value, name
    return best, names


def compare(production: ModelScores, candidate: ModelScores, *, fprs: Sequence[float] = GATE_FPRS,
            alpha: float = DEFAULT_ALPHA, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[Comparison, ...]:
    """The paired comparison at each FPR target (see the module's docstring)."""
    if not (np.array_equal(production.member_keys, candidate.member_keys)
            and np.array_equal(production.nonmember_keys, candidate.nonmember_keys)):
        raise ValueError("the two audits evaluated different records; a paired comparison needs the same ones")
    if set(production.attacks) != set(candidate.attacks):
        raise ValueError("the two audits ran different attacks: "
                         f"{sorted(production.attacks)} and {sorted(candidate.attacks)}")
    unknown = [f for f in fprs if f not in FPR_TARGETS]
    if unknown:
        raise ValueError(f"FPR targets {unknown} are not among the audit's {list(FPR_TARGETS)}")
    n_members, n_nonmembers = len(production.member_keys), len(production.nonmember_keys)
    every_member, every_nonmember = np.arange(n_members), np.arange(n_nonmembers)
    observed_p, attack_p = _headline(production.attacks, every_member, every_nonmember, fprs)
    observed_c, attack_c = _headline(candidate.attacks, every_member, every_nonmember, fprs)
    rng = np.random.default_rng([seed, 28])
    differences = np.empty((n_bootstrap, len(fprs)))
    for b in range(n_bootstrap):
        members = rng.integers(0, n_members, n_members)
        nonmembers = rng.integers(0, n_nonmembers, n_nonmembers)
        differences[b] = (_headline(candidate.attacks, members, nonmembers, fprs)[0]
                          - _headline(production.attacks, members, nonmembers, fprs)[0])
    level = alpha / len(fprs)
    comparisons = []
    for j, fpr in enumerate(fprs):
        lower, upper = np.quantile(differences[:, j], [level, 1 - level])
        comparisons.append(Comparison(
            fpr=float(fpr), production=float(observed_p[j]), candidate=float(observed_c[j]),
            production_attack=attack_p[j], candidate_attack=attack_c[j],
            difference=float(observed_c[j] - observed_p[j]), lower=float(lower), upper=float(upper),
            p_value=float(np.mean(differences[:, j] <= 0)), significant=bool(lower > 0)))
    return tuple(comparisons)


def decide(comparisons: Sequence[Comparison], *, alpha: float = DEFAULT_ALPHA, n_bootstrap: int = DEFAULT_BOOTSTRAP,
           limit_breaches: Sequence[str] = (), weak: Sequence[str] = ()) -> GateResult:
    """The verdict from the comparisons, the policy's absolute limits the candidate breaks (each said in words) and
    the reasons either audit is too weak to judge."""
    reasons: list[str] = []
    if weak:
        return GateResult(GateVerdict.UNDECIDED, tuple(comparisons), alpha, n_bootstrap,
                          tuple(f"cannot decide: {why}" for why in weak))
    for c in comparisons:
        if c.significant:
            reasons.append(f"at {c.fpr:.1%} FPR the candidate's TPR {c.candidate:.2%} ({c.candidate_attack}) is above "
                           f"production's {c.production:.2%} ({c.production_attack}) with confidence: the "
                           f"difference's lower bound is {c.lower:+.2%}")
    reasons += [f"breaks the policy: {breach}" for breach in limit_breaches]
    if reasons:
        return GateResult(GateVerdict.FAIL, tuple(comparisons), alpha, n_bootstrap, tuple(reasons))
    worse = [c for c in comparisons if c.difference > 0]
    if worse:
        return GateResult(GateVerdict.WARN, tuple(comparisons), alpha, n_bootstrap, tuple(
            f"at {c.fpr:.1%} FPR the candidate reads {c.difference:+.2%} above production, within noise "
            f"(p = {c.p_value:.2f})" for c in worse))
    return GateResult(GateVerdict.PASS, tuple(comparisons), alpha, n_bootstrap,
                      ("the candidate leaks no more than production at any target",))
