"""The remediation core on plain arrays: the grids per family, diffprivlib's candidates and their plain
scikit-learn twins, the recommendation rule, and a candidate that fails being a row rather than a crash."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audits.attacks import AuditConfig
from audits.attacks.hardening import (
    Candidate,
    candidates_for,
    dp_candidates,
    exportable,
    regularised_candidates,
)
from audits.attacks.remediation import CandidateOutcome, recommend, run_remediation
from tests.audits.attacks.factories import make_records, make_split, overfit_forest


def test_each_family_gets_its_own_capacity_knob():
    forest = {tuple(c.setting) for c in regularised_candidates(overfit_forest(), seed=0)}
    assert ("min_samples_leaf",) in forest and ("max_depth",) in forest
    logistic = regularised_candidates(make_pipeline(StandardScaler(), LogisticRegression(C=2.0)), seed=0)
    assert [c.setting["C"] for c in logistic] == [0.2, 0.02, 0.002]
    built = logistic[0].build()
    assert built.steps[-1][1].C == 0.2 and built.steps[0][1].__class__ is StandardScaler  # through the pipeline
    mlp = {tuple(sorted(c.setting)) for c in regularised_candidates(MLPClassifier(), seed=0)}
    assert ("alpha",) in mlp and ("early_stopping",) in mlp
    assert regularised_candidates(object(), seed=0) == []


def test_dp_logistic_regression_exports_as_plain_scikit_learn_with_the_same_outputs():
    X, y = make_records(n=600, seed=3)
    target = make_pipeline(StandardScaler(), LogisticRegression())
    candidates = dp_candidates(target, bounds_X=X[300:], n_classes=2, seed=0)
    assert [c.setting for c in candidates] == [{"training": "diffprivlib.LogisticRegression", "epsilon": 1.0},
                                               {"training": "diffprivlib.LogisticRegression", "epsilon": 8.0}]
    fitted = candidates[1].build().fit(X[:300], y[:300])
    assert type(fitted.steps[-1][1]).__module__.startswith("diffprivlib")
    plain = exportable(fitted)
    assert type(plain.steps[-1][1]) is LogisticRegression
    np.testing.assert_allclose(plain.predict_proba(X[300:]), fitted.predict_proba(X[300:]))
    # Stronger privacy costs accuracy on this rule: ε = 1 is noisier than ε = 8 (same seed).
    strong = candidates[0].build().fit(X[:300], y[:300])
    assert (strong.predict(X[300:]) == y[300:]).mean() <= (fitted.predict(X[300:]) == y[300:]).mean() + 0.02


def test_a_dp_forest_runs_but_is_not_deployable():
    split = make_split(n_members=300, n_nonmembers=300, n_population=600)
    kinds = [c.setting.get("training") for c in candidates_for(overfit_forest(), bounds_X=split.population_X,
                                                                n_classes=2, seed=0) if c.kind == "dp"]
    assert kinds == ["diffprivlib.RandomForestClassifier"] * 2
    forest = next(c for c in dp_candidates(overfit_forest(), bounds_X=split.population_X, n_classes=2, seed=0))
    assert exportable(forest.build().fit(split.members_X, split.members_y), index_labels=True) is None


def _outcome(value, accuracy, cost, **extra) -> CandidateOutcome:
    return CandidateOutcome(setting={}, kind="regularised", accuracy=accuracy, accuracy_low=0, accuracy_high=1,
                            train_accuracy=1, tpr_at_1pct_fpr={"value": value}, tpr_at_01pct_fpr={}, auc=0.5,
                            epsilon_lower=0, seconds=0, accuracy_cost=cost, **extra)


def test_the_recommendation_is_the_least_leakage_within_the_budget():
    current = _outcome(0.20, 0.85, 0)
    candidates = [_outcome(0.01, 0.80, 0.05),  # leaks least, costs five points
                  _outcome(0.03, 0.845, 0.005),
                  _outcome(0.03, 0.846, 0.004),  # the same leakage, more accurate: wins the tie
                  _outcome(0.02, 0.85, 0.0, deployable=False),
                  _outcome(0.25, 0.86, -0.01)]  # more accurate but leaks more than today's
    assert recommend(current, candidates, max_accuracy_cost=0.01) == 2
    assert recommend(current, candidates, max_accuracy_cost=0.06) == 0
    assert recommend(current, [candidates[4]], max_accuracy_cost=0.01) is None


def test_a_candidate_that_cannot_train_is_a_row_with_its_error():
    split = make_split(n_members=200, n_nonmembers=200, n_population=400)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)

    def broken():
        raise ValueError("no such setting")

    grid = [Candidate(setting={"min_samples_leaf": 20}, kind="regularised",
                      build=lambda: overfit_forest(n_estimators=20).set_params(min_samples_leaf=20)),
            Candidate(setting={"broken": True}, kind="regularised", build=broken)]
    result = run_remediation(data=split, target_predict_proba=target.predict_proba, estimator=target,
                             config=AuditConfig(n_reference=2, what_if_policies=()), candidates=grid)
    ok, failed = result.candidates
    assert ok.error is None and ok.accuracy is not None and ok.tpr_at_1pct_fpr["value"] is not None
    assert failed.error == "ValueError: no such setting" and failed.accuracy is None and not failed.deployable
    assert result.current.tpr_at_1pct_fpr["value"] >= ok.tpr_at_1pct_fpr["value"]
    assert result.recommended in (0, None) and result.to_dict()["candidates"][1]["error"]


@pytest.mark.parametrize("labels", [None, np.array(["bad", "good"])])
def test_candidates_predict_the_targets_own_labels(labels):
    split = make_split(n_members=200, n_nonmembers=200, n_population=400)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)
    result = run_remediation(data=split, target_predict_proba=target.predict_proba, estimator=target, labels=labels,
                             config=AuditConfig(n_reference=2, what_if_policies=()),
                             candidates=regularised_candidates(overfit_forest(n_estimators=20), seed=0)[:1],
                             max_accuracy_cost=1.0)
    assert result.recommended == 0
    expected = [0, 1] if labels is None else ["bad", "good"]
    assert list(result.recommended_model.classes_) == expected
