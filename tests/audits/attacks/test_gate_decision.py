"""The gate's paired decision (issue 28): a candidate identical to production up to its seed fails no more often than
α, a leakier one fails, a slightly worse one warns, a weak audit cannot decide."""
from __future__ import annotations

import numpy as np
import pytest

from audits.attacks.gate import GateVerdict, ModelScores, compare, decide

N = 600  # members and as many non-members
ATTACKS = ("loss", "rmia", "lira_offline")


def scores(*, base: np.ndarray, is_member: np.ndarray, leak: float, seed: int) -> ModelScores:
    """Three attacks' scores of a model whose members read `leak` higher, each with its own noise: `base` is what the
    records share between two models trained on the same data (how typical or odd each record is)."""
    rng = np.random.default_rng(seed)
    attacks = {}
    for k, name in enumerate(ATTACKS):
        s = base + leak * (1 + 0.2 * k) * is_member + rng.normal(0, 0.6, len(base))
        attacks[name] = (s[is_member], s[~is_member])
    keys = np.arange(len(base))
    return ModelScores(attacks=attacks, member_keys=keys[is_member], nonmember_keys=keys[~is_member])


def records(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    return rng.normal(0, 1, 2 * N), np.arange(2 * N) < N


def test_candidates_identical_up_to_the_seed_fail_no_more_often_than_alpha():
    verdicts = []
    for trial in range(20):
        base, is_member = records(trial)
        production = scores(base=base, is_member=is_member, leak=0.5, seed=100 + trial)
        candidate = scores(base=base, is_member=is_member, leak=0.5, seed=200 + trial)
        verdicts.append(decide(compare(production, candidate, n_bootstrap=200, seed=trial)).verdict)
    failures = sum(v == GateVerdict.FAIL for v in verdicts)
    assert failures <= 2, verdicts  # α = 0.05 of 20 is 1; 2 allows for one unlucky draw
    assert {GateVerdict.PASS, GateVerdict.WARN} & set(verdicts)


def test_a_leakier_candidate_fails_naming_the_target_and_both_attacks():
    base, is_member = records(7)
    production = scores(base=base, is_member=is_member, leak=0.5, seed=1)
    candidate = scores(base=base, is_member=is_member, leak=1.5, seed=2)
    result = decide(compare(production, candidate, n_bootstrap=200))
    assert result.verdict == GateVerdict.FAIL and result.verdict.exit_code == 1
    at_1 = result.comparisons[0]
    assert at_1.fpr == 0.01 and at_1.significant and at_1.lower > 0 and at_1.candidate > at_1.production
    assert "with confidence" in result.reasons[0] and at_1.candidate_attack in result.reasons[0]


def test_a_candidate_that_reads_worse_within_noise_warns_and_exits_0():
    base, is_member = records(3)
    production = scores(base=base, is_member=is_member, leak=0.5, seed=1)
    candidate = scores(base=base, is_member=is_member, leak=0.58, seed=2)
    result = decide(compare(production, candidate, n_bootstrap=200))
    assert result.verdict == GateVerdict.WARN and result.verdict.exit_code == 0
    assert "within noise" in result.reasons[0]


def test_a_policy_breach_fails_and_a_weak_audit_cannot_decide():
    base, is_member = records(4)
    same = scores(base=base, is_member=is_member, leak=0.5, seed=1)
    comparisons = compare(same, same, n_bootstrap=100)
    assert decide(comparisons).verdict == GateVerdict.PASS
    assert decide(comparisons, limit_breaches=["TPR at 1% FPR 12.0% > limit 10.0%"]).verdict == GateVerdict.FAIL
    weak = decide(comparisons, weak=["the candidate's audit had no population data"])
    assert weak.verdict == GateVerdict.UNDECIDED and weak.verdict.exit_code == 2


def test_audits_of_different_records_or_attacks_are_not_compared():
    base, is_member = records(5)
    one = scores(base=base, is_member=is_member, leak=0.5, seed=1)
    moved = ModelScores(attacks=one.attacks, member_keys=one.member_keys + 1, nonmember_keys=one.nonmember_keys)
    with pytest.raises(ValueError, match="different records"):
        compare(one, moved, n_bootstrap=10)
    fewer = ModelScores(attacks={"loss": one.attacks["loss"]}, member_keys=one.member_keys,
                        nonmember_keys=one.nonmember_keys)
    with pytest.raises(ValueError, match="different attacks"):
        compare(one, fewer, n_bootstrap=10)


def test_two_audits_of_the_same_data_are_compared_on_their_records():
    """From run_attacks: two forests trained with different seeds on the same members, audited with the same seed,
    evaluate the same records and are compared record by record."""
    from sklearn.ensemble import RandomForestClassifier

    from audits.attacks import AuditConfig, AuditData, run_attacks
    from audits.attacks.gate import model_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 5))
    y = (X[:, 0] + rng.normal(0, 1, 900) > 0).astype(int)
    data = AuditData(members_X=X[:300], members_y=y[:300], nonmembers_X=X[300:600], nonmembers_y=y[300:600],
                     population_X=X[600:], population_y=y[600:])
    config = AuditConfig(attacks=["threshold"], n_reference=2, what_if_policies=["full"])
    results = [run_attacks(data=data, target_predict_proba=RandomForestClassifier(20, random_state=seed).fit(
        X[:300], y[:300]).predict_proba, estimator_for_reference=RandomForestClassifier(20), config=config)
        for seed in (1, 2)]
    production, candidate = (model_scores(result) for result in results)
    assert np.array_equal(production.member_keys, candidate.member_keys) and len(production.member_keys) == 300
    assert decide(compare(production, candidate, n_bootstrap=100)).verdict in (GateVerdict.PASS, GateVerdict.WARN)
