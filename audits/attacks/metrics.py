"""How well a membership score separates members from non-members: exact ROC, AUC, TPR at low FPR with
Clopper–Pearson intervals, and the empirical ε lower bound (Jagielski et al. 2020); the headline, the best attack
at each FPR with an interval that accounts for choosing it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta

FPR_TARGETS: tuple[float, ...] = (0.001, 0.01, 0.1)
# The figure policies, pages, detectors and evidence lead with: TPR at 1 % FPR (Carlini et al. 2022 argue for
# low-FPR figures; 1 % is the lowest that a few thousand non-members measure reliably).
HEADLINE_FPR = 0.01
DELTA = 1e-5
CONFIDENCE = 0.95
# A TPR at FPR α is only "reliable" when the non-members could show at least this many false positives
# there (n_nonmembers · α ≥ 10). With 10 expected false positives the 95 % Clopper–Pearson interval on the
# realised count is [4.8, 18.4], so the operating point is pinned to within about a factor of two; with
# fewer (below the "rule of three", Hanley & Lippman-Hand 1983, even 0 observed cannot bound FPR under α)
# the figure is mostly noise. Carlini et al. 2022 (§IV) make the same point about low-FPR reporting.
MIN_EXPECTED_FALSE_POSITIVES = 10.0
EXACT_ROC_BELOW_FPR = 0.01
# Where a log-axis ROC (the pages and the PDF report) draws FPR or TPR 0: log axes need a floor.
ROC_FLOOR = 1e-4


def fpr_key(fpr: float) -> str:
    """The JSON key of an FPR target: 0.001 → "0.001"."""
    return f"{fpr:g}"


@dataclass(frozen=True)
class RateEstimate:
    """A rate (fraction, not percent) with its 95 % Clopper–Pearson interval."""

    value: float
    low: float
    high: float
    reliable: bool = True
    # False positives a threshold at this FPR lets through on these non-members: the evidence the figure rests on.
    expected_false_positives: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "reliable": self.reliable,
                "expected_false_positives": self.expected_false_positives}


@dataclass(frozen=True)
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # score at or above which records are called members; +inf for (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"fpr": self.fpr.tolist(), "tpr": self.tpr.tolist()}


@dataclass(frozen=True)
class AttackMetrics:
    auc: float
    advantage: float
    balanced_accuracy: float
    epsilon_lower: float
    tpr_at_fpr: dict[float, RateEstimate]
    n_members: int
    n_nonmembers: int
    roc: RocCurve = field(repr=False)

    def to_dict(self, *, roc: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "auc": self.auc,
            "advantage": self.advantage,
            "balanced_accuracy": self.balanced_accuracy,
            "epsilon_lower": self.epsilon_lower,
            "tpr_at_fpr": {fpr_key(f): rate.to_dict() for f, rate in self.tpr_at_fpr.items()},
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }
        if roc:
            out["roc"] = downsample_roc(self.roc).to_dict()
        return out


def _check_scores(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    members = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if not len(members) or not len(nonmembers):
        raise ValueError("need at least one member and one non-member score")
    if not (np.all(np.isfinite(members)) and np.all(np.isfinite(nonmembers))):
        raise ValueError("scores must be finite")
    return members, nonmembers


def _roc_counts(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives, threshold) after each block of tied scores, from the top."""
    scores = np.concatenate([members, nonmembers])
    is_member = np.concatenate([np.ones(len(members), np.int64), np.zeros(len(nonmembers), np.int64)])
    # Order inside a tied block is irrelevant: only block ends are kept, so tied scores step together.
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tp = np.cumsum(is_member[order])
    fp = np.cumsum(1 - is_member[order])
    ends = np.append(np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1)
    return (np.concatenate([[0], tp[ends]]), np.concatenate([[0], fp[ends]]),
            np.concatenate([[np.inf], sorted_scores[ends]]))


def roc_curve(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> RocCurve:
    """Exact ROC from (0, 0) to (1, 1), one point per distinct score."""
    members, nonmembers = _check_scores(member_scores, nonmember_scores)
    tp, fp, thresholds = _roc_counts(members, nonmembers)
    return RocCurve(fpr=fp / len(nonmembers), tpr=tp / len(members), thresholds=thresholds)


def auc_from_roc(roc: RocCurve) -> float:
    """Trapezoidal area: equals the Mann–Whitney probability P(member > non-member) + ½ P(tie)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


def clopper_pearson(successes: float | np.ndarray, trials: int, *, confidence: float = CONFIDENCE
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper–Pearson interval for a binomial proportion (vectorised; fractional counts allowed,
    which arise from interpolated ROC points)."""
    k = np.asarray(successes, dtype=np.float64)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k <= 0, 0.0, beta.ppf(alpha / 2, np.maximum(k, 1e-300), trials - k + 1))
        high = np.where(k >= trials, 1.0, beta.ppf(1 - alpha / 2, k + 1, np.maximum(trials - k, 1e-300)))
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def tpr_at_fpr(roc: RocCurve, fpr: float, *, n_members: int, n_nonmembers: int) -> RateEstimate:
    """TPR at exactly FPR = `fpr` on the ROC, with a block of tied scores drawn as a straight segment.

    A segment is what a threshold achieves in expectation when the tied block is split at random
    (Fawcett 2006, "An introduction to ROC analysis", §5): it depends on no array order and does not
    round a tie-heavy attack down to zero.
    """
    i = int(np.searchsorted(roc.fpr, fpr, side="right")) - 1  # last point with FPR ≤ target
    if roc.fpr[i] == fpr or i == len(roc.fpr) - 1:
        value = float(roc.tpr[i])
    else:
        w = (fpr - roc.fpr[i]) / (roc.fpr[i + 1] - roc.fpr[i])
        value = float(roc.tpr[i] + w * (roc.tpr[i + 1] - roc.tpr[i]))
    low, high = clopper_pearson(value * n_members, n_members)
    return RateEstimate(value=value, low=float(low), high=float(high),
                        reliable=bool(n_nonmembers * fpr >= MIN_EXPECTED_FALSE_POSITIVES),
                        expected_false_positives=round(n_nonmembers * fpr, 3))


def epsilon_lower_bound(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, delta: float = DELTA,
                        confidence: float = CONFIDENCE) -> float:
    """Empirical ε lower bound (Jagielski et al. 2020, §4): for each threshold, with the upper ends of the
    Clopper–Pearson intervals on FPR and FNR, ε ≥ max(ln((1 − δ − FPR_hi) / FNR_hi), ln((1 − δ − FNR_hi) / FPR_hi)).

    The maximum over thresholds is taken on the same records, as in Jagielski et al.; 0 when no threshold
    gives a positive bound. Strictly, the DP game randomises each record's membership; on a fixed
    member/non-member split the bound is the usual empirical reading, not a proof about the algorithm.
    """
    members, nonmembers = _check_scores(member_scores, nonmember_scores)
    tp, fp, _ = _roc_counts(members, nonmembers)
    fn = len(members) - tp
    _, fpr_hi = clopper_pearson(fp, len(nonmembers), confidence=confidence)
    _, fnr_hi = clopper_pearson(fn, len(members), confidence=confidence)
    best = 0.0
    for numerator_rate, denominator_rate in ((fpr_hi, fnr_hi), (fnr_hi, fpr_hi)):
        numerator = 1.0 - delta - numerator_rate
        ok = (numerator > 0) & (denominator_rate > 0)
        if np.any(ok):
            best = max(best, float(np.max(np.log(numerator[ok] / denominator_rate[ok]))))
    return best


def evaluate(member_scores: np.ndarray, nonmember_scores: np.ndarray, *,
             fprs: Sequence[float] = FPR_TARGETS, delta: float = DELTA) -> AttackMetrics:
    members, nonmembers = _check_scores(member_scores, nonmember_scores)
    roc = roc_curve(members, nonmembers)
    advantage = float(np.max(roc.tpr - roc.fpr))
    return AttackMetrics(
        auc=auc_from_roc(roc),
        advantage=advantage,
        # Best-threshold balanced accuracy: ½(TPR + TNR) = ½ + advantage / 2 on the same ROC.
        balanced_accuracy=0.5 + advantage / 2.0,
        epsilon_lower=epsilon_lower_bound(members, nonmembers, delta=delta),
        tpr_at_fpr={float(f): tpr_at_fpr(roc, float(f), n_members=len(members), n_nonmembers=len(nonmembers))
                    for f in fprs},
        n_members=len(members),
        n_nonmembers=len(nonmembers),
        roc=roc,
    )


@dataclass(frozen=True)
class ClassSlice:
    """The attack's figures within one true class: leakage often concentrates in a minority class."""

    label: int
    n_members: int
    n_nonmembers: int
    auc: float
    tpr_at_fpr: dict[float, RateEstimate]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "n_members": self.n_members, "n_nonmembers": self.n_nonmembers,
                "auc": self.auc, "tpr_at_fpr": {fpr_key(f): r.to_dict() for f, r in self.tpr_at_fpr.items()}}


def class_slices(member_scores: np.ndarray, member_y: np.ndarray, nonmember_scores: np.ndarray,
                 nonmember_y: np.ndarray, *, fprs: Sequence[float] = FPR_TARGETS) -> list[ClassSlice]:
    members, nonmembers = _check_scores(member_scores, nonmember_scores)
    member_y, nonmember_y = np.asarray(member_y), np.asarray(nonmember_y)
    slices = []
    for label in np.unique(np.concatenate([member_y, nonmember_y])):
        m, n = members[member_y == label], nonmembers[nonmember_y == label]
        if not len(m) or not len(n):
            continue
        roc = roc_curve(m, n)
        slices.append(ClassSlice(
            label=int(label), n_members=len(m), n_nonmembers=len(n), auc=auc_from_roc(roc),
            tpr_at_fpr={float(f): tpr_at_fpr(roc, float(f), n_members=len(m), n_nonmembers=len(n)) for f in fprs},
        ))
    return slices


def top_exposed(member_scores: np.ndarray, *, k: int, tie_keys: np.ndarray | None = None) -> list[int]:
    """Indices of the k members with the highest scores (never the scores or the records themselves).

    Within a tie the order follows `tie_keys` (content keys), not positions, so the list names the same
    records however the input was ordered.
    """
    scores = np.asarray(member_scores, dtype=np.float64)
    secondary = np.arange(len(scores)) if tie_keys is None else np.asarray(tie_keys)
    order = np.lexsort((secondary, -scores))
    return [int(i) for i in order[: max(k, 0)]]


def downsample_roc(roc: RocCurve, *, exact_below: float = EXACT_ROC_BELOW_FPR, max_points: int = 200) -> RocCurve:
    """Keep every point with FPR ≤ `exact_below` (where the audit's figures live) and thin the rest to about
    `max_points` on a log-spaced FPR grid, always keeping (1, 1)."""
    fpr, tpr = roc.fpr, roc.tpr
    keep = fpr <= exact_below
    rest = np.flatnonzero(~keep)
    if len(rest) > max_points:
        grid = np.geomspace(max(exact_below, fpr[rest[0]]), 1.0, max_points)
        picks = np.searchsorted(fpr[rest], grid, side="right") - 1
        chosen = rest[np.unique(np.clip(picks, 0, len(rest) - 1))]
        # the last point of each grid cell is the highest TPR at that FPR: the upper envelope survives
        keep[chosen] = True
        keep[rest[0]] = True
        keep[-1] = True
    else:
        keep[rest] = True
    return RocCurve(fpr=fpr[keep], tpr=tpr[keep], thresholds=roc.thresholds[keep])


@dataclass(frozen=True)
class HeadlineRate:
    """The best attack's TPR at one FPR target, with an interval that accounts for the choice of that attack among
    `n_compared` and for the threshold being set on the same non-members (`threshold_safe_bounds`, `headline`)."""

    value: float
    low: float
    high: float
    reliable: bool
    attack: str
    expected_false_positives: float | None = None
    n_compared: int = 1  # attacks the best was chosen among: the interval is simultaneous over all of them

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "attack": self.attack,
                "reliable": self.reliable, "expected_false_positives": self.expected_false_positives,
                "n_compared": self.n_compared}


@dataclass(frozen=True)
class Headline:
    """The strongest attack's figure at each operating point (the max over attacks, so mildly optimistic
    for the attacker: that is the side an audit should err on; the TPR intervals account for that choice)."""

    auc: float
    auc_attack: str
    epsilon_lower: float
    epsilon_attack: str
    tpr_at_fpr: dict[float, HeadlineRate]

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "auc_attack": self.auc_attack, "epsilon_lower": self.epsilon_lower,
                "epsilon_attack": self.epsilon_attack,
                "tpr_at_fpr": {fpr_key(f): r.to_dict() for f, r in self.tpr_at_fpr.items()}}


def threshold_aware_bounds(metrics: AttackMetrics, fpr: float, *, confidence: float) -> tuple[float, float]:
    """One attack's two-sided interval for its TPR at FPR `fpr`, counting both sources of noise: which members were
    drawn, and where the non-members put the threshold.

    The per-attack Clopper–Pearson interval (`tpr_at_fpr`) counts only the members. The threshold's true FPR is a
    draw too (10 ± 3 false positives on 1,000 non-members at 1 %), and through the ROC's slope it moves the TPR as
    much again on a placebo: the TPR read at an estimated FPR has variance TPR(1 − TPR) / n_members +
    slope² · FPR(1 − FPR) / n_nonmembers (Hsieh & Turnbull 1996, Ann. Statist. 24; Pepe 2003, "The Statistical
    Evaluation of Medical Tests", §5.2). The two are independent, so their half-widths add in quadrature (MOVER:
    Zou & Donner 2008, Statist. Med. 27): the members' Clopper–Pearson half-width, and the threshold's, read off this
    ROC as how far the TPR moves between `fpr` and the ends of the Clopper–Pearson interval of a false-positive
    count n_nonmembers · `fpr` (no slope to estimate; asymmetric where the ROC bends).
    """
    n_members, n_nonmembers = metrics.n_members, metrics.n_nonmembers

    def tpr(at: float) -> float:
        return tpr_at_fpr(metrics.roc, at, n_members=n_members, n_nonmembers=n_nonmembers).value

    value = tpr(fpr)
    member_low, member_high = clopper_pearson(value * n_members, n_members, confidence=confidence)
    fpr_low, fpr_high = clopper_pearson(fpr * n_nonmembers, n_nonmembers, confidence=confidence)
    threshold_down, threshold_up = value - tpr(float(fpr_low)), tpr(float(fpr_high)) - value
    low = value - float(np.hypot(value - member_low, threshold_down))
    high = value + float(np.hypot(member_high - value, threshold_up))
    return max(low, 0.0), min(high, 1.0)


def headline(results: Sequence[tuple[str, AttackMetrics]], *, confidence: float = CONFIDENCE) -> Headline:
    """Max over attacks at each FPR target, naming the attack (first listed wins an exact tie), with an interval
    that accounts for the attack having been chosen on the records it is scored on.

    The value is the chosen attack's TPR on all records, as before. The interval is simultaneous over the k attacks
    that ran (Bonferroni): each attack gets an interval for its true TPR at this FPR at confidence
    1 − (1 − `confidence`) / k (`threshold_aware_bounds`: member and threshold noise), so with probability
    `confidence` every attack's interval holds at once, whichever attack the data then favours. On that event
        max_a low_a ≤ max_a TPR_a ≤ max_a high_a,
    so [max of the lower bounds, max of the upper bounds] is an interval for the best attack's TPR, which is what
    the headline estimates. The chosen attack's own lower bound would be valid too (it bounds that attack's TPR,
    itself at most the best's) but is never larger than the maximum. Its own upper bound is NOT valid: the attack
    that read highest may have been lucky while another's true TPR is higher still, so the upper end is the maximum
    over every attack's.

    The per-attack intervals are approximate (a variance sum, not an exact bound). An exact construction (read the
    ROC at a false-positive count that is too high with probability ≤ α/4k, then Clopper–Pearson) held chance on
    every placebo but was about three times as wide, and with 6 attacks and fewer than 614 non-members could never
    put a lower bound above 0 at 1 % FPR. Measured on placebos (a model that never saw its "members": every
    attack's true TPR equals the FPR): tests/audits/attacks/test_headline_selection.py.
    """
    if not results:
        raise ValueError("no attack results to summarise")
    best_auc = max(results, key=lambda r: r[1].auc)
    best_eps = max(results, key=lambda r: r[1].epsilon_lower)
    each = 1.0 - (1.0 - confidence) / len(results)
    rates: dict[float, HeadlineRate] = {}
    for fpr in results[0][1].tpr_at_fpr:
        name, metrics = max(results, key=lambda r: r[1].tpr_at_fpr[fpr].value)
        rate = metrics.tpr_at_fpr[fpr]
        lows, highs = zip(*(threshold_aware_bounds(m, fpr, confidence=each) for _, m in results), strict=True)
        rates[fpr] = HeadlineRate(value=rate.value, low=max(lows), high=max(highs), reliable=rate.reliable, attack=name,
                                  expected_false_positives=rate.expected_false_positives, n_compared=len(results))
    return Headline(auc=best_auc[1].auc, auc_attack=best_auc[0], epsilon_lower=best_eps[1].epsilon_lower,
                    epsilon_attack=best_eps[0], tpr_at_fpr=rates)
