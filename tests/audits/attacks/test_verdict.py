"""The verdict: a breach needs the figure past its limit and beyond chance, a rise against the previous run is a
regression, and an audit whose strongest attacks could not run is inconclusive, never passed. No database."""
from __future__ import annotations

from typing import Any

import pytest

from audits.attacks import AuditResult, Headline, HeadlineRate
from audits.attacks.verdict import (
    MIN_REFERENCE_SHARE,
    AuditAlertKind,
    LimitedMetric,
    PolicyLimits,
    PreviousRun,
    VerdictState,
    fpr_upper_bound,
    judge,
    weak_audit_reasons,
)
from monitor.platform.severity import Severity
from tests.audits.attacks.factories import audit, make_split, overfit_forest

LIMITS = PolicyLimits(tpr_at_1pct_fpr=0.02, epsilon_lower=1.0, regression_factor=2.0)


def result_with(*, tpr: float, low: float, epsilon: float = 0.1, n_nonmembers: int = 1000,
                skipped: dict[str, str] | None = None, target: int = 1000,
                reference_sizes: dict[str, int] | None = None) -> AuditResult:
    """An AuditResult whose headline reads `tpr` [low, ...] at every FPR, with the config run_attacks records."""
    rate = HeadlineRate(value=tpr, low=low, high=min(1.0, tpr + 0.05), reliable=True, attack="rmia")
    headline = Headline(auc=0.6, auc_attack="rmia", epsilon_lower=epsilon, epsilon_attack="loss",
                        tpr_at_fpr={0.001: rate, 0.01: rate, 0.1: rate})
    config: dict[str, Any] = {
        "n_nonmembers": n_nonmembers, "target_train_size": target,
        "reference_train_size": {"offline": target} if reference_sizes is None else reference_sizes,
        "coverage": {"ran": ["loss"], "skipped": skipped or {}},
    }
    return AuditResult(attacks=(), headline=headline, what_if=(), recommendations=(), accuracy={}, config=config,
                       notes=(), timings={})


def test_a_figure_within_the_limits_passes():
    verdict = judge(result_with(tpr=0.015, low=0.008), limits=LIMITS)
    assert verdict.state == VerdictState.PASSED and verdict.passed
    assert verdict.to_dict() == {"passed": True, "verdict": "passed", "weak_audit": [], "breaches": [],
                                 "regression": None}


def test_a_tpr_past_its_limit_and_beyond_chance_is_a_breach_naming_its_attack_and_interval():
    verdict = judge(result_with(tpr=0.2, low=0.15), limits=LIMITS)
    assert verdict.state == VerdictState.BREACHED and not verdict.passed
    assert verdict.to_dict()["breaches"] == [{"metric": "tpr_at_1pct_fpr", "value": 0.2, "limit": 0.02,
                                              "attack": "rmia", "low": 0.15, "high": 0.25}]


def test_a_tpr_past_its_limit_that_chance_explains_is_no_breach():
    """1 % FPR on 1,000 non-members: up to about 1.8 % of false positives is chance (Clopper–Pearson upper
    bound), so a lower bound of 1.5 % proves nothing even with the point estimate at 3 %."""
    assert 0.015 < fpr_upper_bound(0.01, 1000) < 0.02
    verdict = judge(result_with(tpr=0.03, low=0.015), limits=LIMITS)
    assert verdict.state == VerdictState.PASSED and verdict.breaches == ()


def test_an_epsilon_past_its_limit_is_a_breach_without_an_interval():
    verdict = judge(result_with(tpr=0.015, low=0.008, epsilon=2.5), limits=LIMITS)
    assert [b.to_dict() for b in verdict.breaches] == [{"metric": "epsilon_lower", "value": 2.5, "limit": 1.0}]


def test_the_worst_breach_sets_the_severity():
    verdict = judge(result_with(tpr=0.03, low=0.025, epsilon=2.5), limits=LIMITS)
    worst = verdict.worst_breach()
    assert worst is not None and worst.metric == LimitedMetric.EPSILON_LOWER  # 2.5x its limit, against 1.5x
    assert worst.severity == Severity.CRITICAL
    assert judge(result_with(tpr=0.03, low=0.025), limits=LIMITS).worst_breach().severity == Severity.WARNING


def test_a_limit_the_stored_policy_does_not_set_is_never_breached():
    limits = PolicyLimits.from_dict({})
    assert judge(result_with(tpr=0.9, low=0.85, epsilon=8.0), limits=limits).state == VerdictState.PASSED
    assert PolicyLimits.from_dict({"tpr_at_1pct_fpr": 0.05, "epsilon_lower": 2.0, "regression_factor": 3.0}) == \
        PolicyLimits(tpr_at_1pct_fpr=0.05, epsilon_lower=2.0, regression_factor=3.0)


def test_a_rise_by_the_factor_over_the_previous_run_is_a_regression():
    previous = PreviousRun(run_id=41, tpr_at_1pct_fpr=0.0075)
    verdict = judge(result_with(tpr=0.015, low=0.008), limits=LIMITS, previous=previous)
    assert verdict.state == VerdictState.BREACHED
    assert verdict.to_dict()["regression"] == {"metric": "tpr_at_1pct_fpr", "previous": 0.0075, "now": 0.015,
                                               "factor": 2.0, "previous_run": 41}
    smaller_rise = judge(result_with(tpr=0.014, low=0.008), limits=LIMITS, previous=previous)
    assert smaller_rise.regression is None and smaller_rise.passed


@pytest.mark.parametrize("before", [None, 0.0])
def test_a_previous_run_without_a_figure_above_zero_sets_no_baseline(before):
    previous = PreviousRun(run_id=41, tpr_at_1pct_fpr=before)
    assert judge(result_with(tpr=0.015, low=0.008), limits=LIMITS, previous=previous).regression is None


def test_an_audit_that_could_not_run_its_reference_attacks_is_inconclusive_and_says_what_to_upload():
    result = result_with(tpr=0.015, low=0.008, skipped={"rmia": "too few records", "quantile": "small pool"})
    verdict = judge(result, limits=LIMITS)
    assert verdict.state == VerdictState.INCONCLUSIVE and not verdict.passed
    assert len(verdict.weak_audit) == 1  # quantile needs no reference models
    assert verdict.weak_audit[0].startswith("rmia could not run (too few records)")
    assert "upload population data" in verdict.weak_audit[0]


def test_reference_models_far_smaller_than_the_target_make_a_weak_audit():
    small = int(MIN_REFERENCE_SHARE * 10_000) - 1
    reasons = weak_audit_reasons(result_with(tpr=0.01, low=0.005, target=10_000, reference_sizes={"offline": small}))
    assert reasons == [f"offline reference models trained on {small:,} records against the target's 10,000: "
                       "upload more population data (about 10,000 records)"]
    assert weak_audit_reasons(result_with(tpr=0.01, low=0.005, target=10_000,
                                          reference_sizes={"offline": small + 1})) == []


def test_a_breach_found_by_a_weak_audit_is_still_a_breach():
    verdict = judge(result_with(tpr=0.2, low=0.15, skipped={"rmia": "too few records"}), limits=LIMITS)
    assert verdict.state == VerdictState.BREACHED and verdict.weak_audit


def test_a_memorising_model_breaches_a_two_percent_limit():
    split = make_split(n_members=300, n_nonmembers=300, n_population=600, random_labels=True)
    target = overfit_forest(n_estimators=30).fit(split.members_X, split.members_y)
    verdict = judge(audit(split=split, target=target, attacks=["threshold"]), limits=LIMITS)
    assert verdict.state == VerdictState.BREACHED
    assert {b.metric for b in verdict.breaches} >= {LimitedMetric.TPR_AT_1PCT_FPR}


def test_the_audit_alert_kinds_are_the_stored_words():
    assert [str(kind) for kind in AuditAlertKind] == ["policy_breach", "weak_audit", "leakage_regression"]
