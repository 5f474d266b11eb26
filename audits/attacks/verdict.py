"""An audit's verdict: its result compared with the model's policy limits and with the previous run, and the
kinds of alert an audit raises. Pure: reads the `AuditResult` dataclasses, returns a `Verdict`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from audits.attacks.catalogue import attack_class
from audits.attacks.metrics import HEADLINE_FPR, HeadlineRate, clopper_pearson
from audits.attacks.results import AuditResult
from monitor.platform.severity import Severity

# Reference models trained on less than this share of the target's training-set size make a weak audit.
MIN_REFERENCE_SHARE = 0.1


class AuditAlertKind(StrEnum):
    """The alerts an audit raises (`Alert.kind` of an audit alert)."""

    POLICY_BREACH = "policy_breach"
    WEAK_AUDIT = "weak_audit"
    LEAKAGE_REGRESSION = "leakage_regression"


class VerdictState(StrEnum):
    PASSED = "passed"
    BREACHED = "breached"
    INCONCLUSIVE = "inconclusive"  # a weak audit: its figures may under-report the leakage


class LimitedMetric(StrEnum):
    """The headline figures a policy limits (the keys of the policy's `limits`)."""

    TPR_AT_1PCT_FPR = "tpr_at_1pct_fpr"
    EPSILON_LOWER = "epsilon_lower"


@dataclass(frozen=True)
class PolicyLimits:
    """The policy's limits; a limit left out of the stored policy can never be breached."""

    tpr_at_1pct_fpr: float = 1.0
    epsilon_lower: float = float("inf")
    regression_factor: float = 2.0

    @classmethod
    def from_dict(cls, limits: Mapping[str, Any]) -> PolicyLimits:
        """From `AuditPolicy.config()["limits"]` as a run stores it."""
        defaults = cls()
        return cls(tpr_at_1pct_fpr=limits.get(LimitedMetric.TPR_AT_1PCT_FPR, defaults.tpr_at_1pct_fpr),
                   epsilon_lower=limits.get(LimitedMetric.EPSILON_LOWER, defaults.epsilon_lower),
                   regression_factor=limits.get("regression_factor", defaults.regression_factor))


@dataclass(frozen=True)
class PreviousRun:
    """The run a new one is compared with: its id and its headline TPR at 1 % FPR (None if it has none)."""

    run_id: int
    tpr_at_1pct_fpr: float | None


@dataclass(frozen=True)
class Breach:
    metric: LimitedMetric
    value: float
    limit: float
    rate: HeadlineRate | None = None  # a TPR breach: the headline rate, its interval and attack

    @property
    def excess(self) -> float:
        """How far past its limit: the worst breach is the largest."""
        return self.value / self.limit if self.limit else float("inf")

    @property
    def severity(self) -> Severity:
        return Severity.CRITICAL if self.value >= 2 * self.limit else Severity.WARNING

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric.value, "value": self.value, "limit": self.limit}
        if self.rate is not None:
            out.update({"attack": self.rate.attack, "low": self.rate.low, "high": self.rate.high})
        return out


@dataclass(frozen=True)
class Regression:
    """The headline TPR at 1 % FPR grew by `factor` or more over the previous run's."""

    previous: float
    now: float
    factor: float
    previous_run: int
    metric: LimitedMetric = LimitedMetric.TPR_AT_1PCT_FPR

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.value, "previous": self.previous, "now": self.now, "factor": self.factor,
                "previous_run": self.previous_run}


@dataclass(frozen=True)
class Verdict:
    state: VerdictState
    breaches: tuple[Breach, ...]
    regression: Regression | None
    weak_audit: tuple[str, ...]  # why the audit is weaker than the data allows, each with what to do

    @property
    def passed(self) -> bool:
        return self.state == VerdictState.PASSED

    def worst_breach(self) -> Breach | None:
        return max(self.breaches, key=lambda breach: breach.excess) if self.breaches else None

    def to_dict(self) -> dict[str, Any]:
        """The run's stored `policy_result`."""
        return {"passed": self.passed, "verdict": self.state.value, "weak_audit": list(self.weak_audit),
                "breaches": [breach.to_dict() for breach in self.breaches],
                "regression": self.regression.to_dict() if self.regression is not None else None}


def judge(result: AuditResult, *, limits: PolicyLimits, previous: PreviousRun | None = None) -> Verdict:
    """Policy verdict: limits on the headline, and regression against the previous run.

    A TPR breach needs the point estimate above the limit *and* its 95 % lower bound above the upper
    bound of the FPR at that threshold: the headline is a maximum over several attacks, the threshold is
    itself estimated from a few non-members, and on a few hundred records chance alone lifts the figure
    past a 2 % limit (a placebo model did, in our tests). ε_lower is already a lower bound.
    """
    rate = result.rate_at(HEADLINE_FPR)
    breaches = []
    beyond_chance = rate is not None and rate.low > fpr_upper_bound(HEADLINE_FPR, result.n_nonmembers)
    if rate is not None and rate.value > limits.tpr_at_1pct_fpr and beyond_chance:
        breaches.append(Breach(metric=LimitedMetric.TPR_AT_1PCT_FPR, value=rate.value, limit=limits.tpr_at_1pct_fpr,
                               rate=rate))
    epsilon = result.headline.epsilon_lower if result.headline is not None else None
    if epsilon is not None and epsilon > limits.epsilon_lower:
        breaches.append(Breach(metric=LimitedMetric.EPSILON_LOWER, value=epsilon, limit=limits.epsilon_lower))
    regression = None
    before = previous.tpr_at_1pct_fpr if previous is not None else None
    if (previous is not None and before is not None and rate is not None and before > 0
            and rate.value >= limits.regression_factor * before):
        regression = Regression(previous=before, now=rate.value, factor=limits.regression_factor,
                                previous_run=previous.run_id)
    weak = tuple(weak_audit_reasons(result))
    # A weak audit passes nothing: its figures may be low. A breach found by a weak audit is still a breach.
    state = (VerdictState.BREACHED if breaches or regression is not None
             else VerdictState.INCONCLUSIVE if weak else VerdictState.PASSED)
    return Verdict(state=state, breaches=tuple(breaches), regression=regression, weak_audit=weak)


def fpr_upper_bound(fpr: float, n_nonmembers: int) -> float:
    """Clopper–Pearson upper bound of the false-positive rate measured at a threshold set to `fpr`."""
    if n_nonmembers <= 0:
        return 1.0
    return float(clopper_pearson(int(round(fpr * n_nonmembers)), n_nonmembers)[1])


def weak_audit_reasons(result: AuditResult) -> list[str]:
    """Why the attacks that ran are weaker than the data would allow, each with what to do about it ([] if not)."""
    reasons = []
    skipped = result.skipped
    reference = [name for name in skipped if needs_references(name)]
    if reference:
        reasons.append(f"{', '.join(reference)} could not run ({skipped[reference[0]]}); the strongest attacks need "
                       "reference models: upload population data (records from the same source the model never "
                       "trained on) or more non-members")
    target = result.target_train_size
    for kind, size in result.reference_train_sizes.items():
        if target and size < MIN_REFERENCE_SHARE * target:
            reasons.append(f"{kind} reference models trained on {size:,} records against the target's {target:,}: "
                           f"upload more population data (about {int(target):,} records)")
    return reasons


def needs_references(name: str) -> bool:
    """Whether the attack named `name` needs reference models (False for a name the catalogue no longer has)."""
    try:
        return bool(attack_class(name).reference_sets)
    except KeyError:
        return False
