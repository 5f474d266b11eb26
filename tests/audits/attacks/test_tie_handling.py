"""No figure depends on the order of the records: a tie-break by position would inflate every figure when the
evaluation array is members-then-non-members."""
import json

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from audits.attacks import AuditConfig, AuditData, run_attacks
from tests.audits.attacks.factories import make_split


def _without_timings(result: dict) -> dict:
    result = json.loads(json.dumps(result))
    result.pop("timings")
    for attack in result["attacks"]:
        attack.pop("seconds")
    return result


def _run(split, target, *, order_m, order_n, order_p):
    data = AuditData(
        members_X=split.members_X[order_m], members_y=split.members_y[order_m],
        nonmembers_X=split.nonmembers_X[order_n], nonmembers_y=split.nonmembers_y[order_n],
        population_X=split.population_X[order_p], population_y=split.population_y[order_p],
        member_ids=[f"record-{i}" for i in order_m],
    )
    config = AuditConfig(attacks=["threshold", "rmia", "lira_offline", "lira_online", "label_only"], n_reference=2,
                         what_if_policies=["full", "round:1", "label", "noise:0.05"], max_per_side=300)
    return run_attacks(data=data, target_predict_proba=target.predict_proba, estimator_for_reference=target,
                       config=config).to_dict()


def test_shuffling_the_records_changes_no_figure():
    split = make_split(n_members=400, n_nonmembers=400, n_population=600, seed=4)
    # 10 trees: probabilities in steps of 0.1, so most scores are tied
    target = RandomForestClassifier(n_estimators=10, random_state=0).fit(split.members_X, split.members_y)
    rng = np.random.default_rng(0)
    ordered = _run(split, target, order_m=np.arange(400), order_n=np.arange(400), order_p=np.arange(600))
    shuffled = _run(split, target, order_m=rng.permutation(400), order_n=rng.permutation(400),
                    order_p=rng.permutation(600))
    assert _without_timings(shuffled) == _without_timings(ordered)


def test_fully_tied_scores_read_as_chance_even_members_first():
    split = make_split(n_members=300, n_nonmembers=300, n_population=0, seed=5)

    def constant(X: np.ndarray) -> np.ndarray:
        return np.tile([0.5, 0.5], (len(X), 1))

    data = AuditData(members_X=split.members_X, members_y=split.members_y,
                     nonmembers_X=split.nonmembers_X, nonmembers_y=split.nonmembers_y)
    result = run_attacks(data=data, target_predict_proba=constant, estimator_for_reference=None,
                         config=AuditConfig(attacks=["threshold"], what_if_policies=[]))
    for attack in result.attacks:
        assert attack.metrics.auc == 0.5
        for fpr, rate in attack.metrics.tpr_at_fpr.items():
            assert rate.value == pytest.approx(fpr)
