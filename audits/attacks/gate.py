"""The privacy gate's decision (PURE): does a candidate model leak more than the production model, beyond noise?

Both models are attacked on the same evaluation non-members, with the same attacks, so they are compared on those
records: the statistic at each FPR target is the difference of the two models' headlines (the best attack's TPR at
that FPR, each model's own best, on all records), and a bootstrap resamples the records, recomputing both headlines
each time. Choosing the best attack again in every resample carries the choice into the interval, which
overlapping per-model intervals do not.

Members: when both audits evaluated the same members (the candidate was trained on production's members, the usual
case) they are resampled together, as the non-members always are: the comparison is paired. A candidate trained on
its own members (its `member_keys` differ; the non-members must not) has each model's members resampled on their own:
paired on non-members, unpaired on members (`Comparison.paired` says which).

Rule (`decide`): FAIL when, at any FPR target, the one-sided lower confidence bound of candidate − production (the
bootstrap's α / len(fprs) quantile: Bonferroni over the targets) is above 0, or when the candidate breaks the
policy's absolute limit; WARN when the candidate's headline is higher somewhere but not significantly; PASS
otherwise; UNDECIDED when either audit is too weak to judge (its verdict is "inconclusive").

Measured false failures (the rule's FAIL without policy limits, α = 0.05) on candidates identical to production up
to the seed. Synthetic score sets: 0 of 100 paired and 0 of 60 unpaired trials (tests/audits/attacks/
test_gate_decision.py); longer runs 1 of 200 (3 attacks) and 2 of 200 (6 tied, forest-like attacks). Adult forests
of the default policy, 10,000 records a side: 1 of 20 pairs in bench/gate.py, and 4 of 84 random pairings of 56
forests (4.8 %), every one at 1 % FPR. The record bootstrap holds both models fixed, so the part of a forest's
seed-to-seed spread common to all records is not in it: at 1 % FPR its standard deviation of the difference was
0.85 points where the 56 forests' pairwise differences spread 0.96. The 1 % target thus fails about twice its α / 2
share, and the total stays near α because the 0.1 % target fails less than its share (0 of 84). A centred ("basic")
bootstrap bound failed 7–12 % of synthetic identical candidates and is not used.

Each resample's ROC is a weighted cumulative sum over one sort per attack and model (`RankedScores`), equal to
`metrics.roc_curve` on the resampled records: 1,000 resamples of 6 attacks × 2 models on 10,000 + 10,000 records
take about 5 s.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from audits.attacks.metrics import FPR_TARGETS

GATE_FPRS = (0.01, 0.001)
DEFAULT_ALPHA = 0.05
DEFAULT_BOOTSTRAP = 1000
# Resamples weighed in one array (resamples × records floats): bounds the memory, ~25 MB on 16,000 records a side.
RESAMPLES_AT_ONCE = 100


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
    order of `member_keys` / `nonmember_keys` (records.record_keys). Two models compared must share their
    non-members; sharing their members too (the same keys, in the same order) makes the comparison paired."""

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
    paired: bool = True  # the same members resampled for both models (False: each model's own members; see module)

    def to_dict(self) -> dict[str, Any]:
        return {"fpr": self.fpr, "production": self.production, "candidate": self.candidate,
                "production_attack": self.production_attack, "candidate_attack": self.candidate_attack,
                "difference": self.difference, "lower": self.lower, "upper": self.upper, "p_value": self.p_value,
                "significant": self.significant, "paired": self.paired}


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


class RankedScores:
    """One attack's scores of one model, sorted once: a bootstrap resample only reweights the records, so its ROC is
    a weighted cumulative sum over this order, with no sort. Equal to `metrics.roc_curve` + `metrics.tpr_at_fpr` on
    the resampled records (a block of tied scores a resample leaves empty only repeats the point before it)."""

    def __init__(self, member_scores: np.ndarray, nonmember_scores: np.ndarray) -> None:
        members = np.asarray(member_scores, dtype=np.float64).reshape(-1)
        nonmembers = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
        scores = np.concatenate([members, nonmembers])
        self.order = np.argsort(-scores, kind="stable")  # positions into [members, non-members]
        self.is_member = self.order < len(members)
        ordered = scores[self.order]
        self.ends = np.append(np.flatnonzero(np.diff(ordered)), len(scores) - 1)  # last position of each tied block

    def tpr_at(self, fprs: Sequence[float], member_weights: np.ndarray, nonmember_weights: np.ndarray) -> np.ndarray:
        """TPR at each FPR target (columns) for each resample (rows), a resample being how many times it draws each
        member and non-member (weights of shape resamples × records)."""
        return self.tpr_at_drawn(fprs, np.concatenate([member_weights, nonmember_weights], axis=1).T)

    def tpr_at_drawn(self, fprs: Sequence[float], drawn: np.ndarray) -> np.ndarray:
        """`tpr_at` with the draws laid out records (members, then non-members) × resamples: rows gather fast, and
        the copy below makes each resample's cumulative sum run over contiguous memory."""
        weights = np.ascontiguousarray(drawn[self.order].T)
        counted = np.cumsum(weights, axis=1)[:, self.ends]
        true_positives = np.cumsum(weights * self.is_member, axis=1)[:, self.ends]
        false_positives = counted - true_positives  # whole counts in floats: exact
        zero = np.zeros((len(weights), 1))
        tpr = np.hstack([zero, true_positives / true_positives[:, -1:]])
        fpr = np.hstack([zero, false_positives / false_positives[:, -1:]])
        rows = np.arange(len(weights))
        out = np.empty((len(weights), len(fprs)))
        for j, target in enumerate(fprs):
            i = np.sum(fpr <= target, axis=1) - 1  # the last point with FPR ≤ target (FPR is sorted in each row)
            after = np.minimum(i + 1, fpr.shape[1] - 1)
            at, next_fpr = fpr[rows, i], fpr[rows, after]
            exact = (at == target) | (i == fpr.shape[1] - 1)
            step = np.where(exact, 1.0, next_fpr - at)
            share = np.where(exact, 0.0, (target - at) / step)
            out[:, j] = tpr[rows, i] + share * (tpr[rows, after] - tpr[rows, i])
        return out


def bootstrap_tprs(production: ModelScores, candidate: ModelScores, *, fprs: Sequence[float], n_bootstrap: int,
                   seed: int, paired: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each attack's TPR at each FPR target for both models: on all records (row 0) and on each resample (rows 1..),
    shaped (1 + n_bootstrap) × attacks × targets, production's then the candidate's. The same non-members are drawn
    for both models; the same members too when `paired`, else each model's members independently."""
    names = list(production.attacks)  # production's order: the first listed wins a tie, as in the headline
    ranked_p = [RankedScores(*production.attacks[name]) for name in names]
    ranked_c = [RankedScores(*candidate.attacks[name]) for name in names]
    n_members_p, n_members_c = len(production.member_keys), len(candidate.member_keys)
    n_nonmembers = len(production.nonmember_keys)
    rng = np.random.default_rng([seed, 28])
    tprs_p = np.empty((1 + n_bootstrap, len(names), len(fprs)))
    tprs_c = np.empty_like(tprs_p)
    start = 0
    while start < 1 + n_bootstrap:
        size = min(RESAMPLES_AT_ONCE, 1 + n_bootstrap - start)
        nonmembers = _draws(rng, n_nonmembers, size)
        members_p = _draws(rng, n_members_p, size)
        members_c = members_p if paired else _draws(rng, n_members_c, size)
        if start == 0:  # resample 0: every record once
            nonmembers[:, 0], members_p[:, 0], members_c[:, 0] = 1, 1, 1
        drawn_p = np.concatenate([members_p, nonmembers])
        drawn_c = drawn_p if paired else np.concatenate([members_c, nonmembers])
        for a in range(len(names)):
            tprs_p[start:start + size, a] = ranked_p[a].tpr_at_drawn(fprs, drawn_p)
            tprs_c[start:start + size, a] = ranked_c[a].tpr_at_drawn(fprs, drawn_c)
        start += size
    return names, tprs_p, tprs_c


def _draws(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """How often each of n records (rows) is drawn in each of `size` resamples (columns) of n draws with
    replacement."""
    picks = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]  # each resample in its own range
    return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).T.astype(np.float64)


def compare(production: ModelScores, candidate: ModelScores, *, fprs: Sequence[float] = GATE_FPRS,
            alpha: float = DEFAULT_ALPHA, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[Comparison, ...]:
    """The comparison at each FPR target (see the module's docstring): paired on the non-members, which must be the
    same records, and on the members when they are too."""
    if not np.array_equal(production.nonmember_keys, candidate.nonmember_keys):
        raise ValueError("the two audits evaluated different records (non-members): the comparison needs the same "
                         "non-members for both models")
    if set(production.attacks) != set(candidate.attacks):
        raise ValueError("the two audits ran different attacks: "
                         f"{sorted(production.attacks)} and {sorted(candidate.attacks)}")
    unknown = [f for f in fprs if f not in FPR_TARGETS]
    if unknown:
        raise ValueError(f"FPR targets {unknown} are not among the audit's {list(FPR_TARGETS)}")
    paired = np.array_equal(production.member_keys, candidate.member_keys)
    names, tprs_p, tprs_c = bootstrap_tprs(production, candidate, fprs=fprs, n_bootstrap=n_bootstrap, seed=seed,
                                           paired=paired)
    best_p, best_c = tprs_p.max(axis=1), tprs_c.max(axis=1)  # resamples × targets
    differences = (best_c - best_p)[1:]
    level = alpha / len(fprs)
    comparisons = []
    for j, fpr in enumerate(fprs):
        lower, upper = np.quantile(differences[:, j], [level, 1 - level])
        comparisons.append(Comparison(
            fpr=float(fpr), production=float(best_p[0, j]), candidate=float(best_c[0, j]),
            production_attack=names[int(np.argmax(tprs_p[0, :, j]))],
            candidate_attack=names[int(np.argmax(tprs_c[0, :, j]))],
            difference=float(best_c[0, j] - best_p[0, j]), lower=float(lower), upper=float(upper),
            p_value=float(np.mean(differences[:, j] <= 0)), significant=bool(lower > 0), paired=paired))
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
