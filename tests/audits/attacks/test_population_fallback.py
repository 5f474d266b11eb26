"""Audits never under-report silently: without population data the reference attacks run on half the
non-members, a policy that cannot train its reference models degrades instead of failing, and the result says
which attacks ran and which could not, and why."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from audits.attacks import AuditData
from tests.audits.attacks.factories import audit, make_split, overfit_forest


def test_without_population_rmia_and_lira_still_run_and_read_what_they_read_with_one():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=1500, seed=3)
    target = overfit_forest(n_estimators=40).fit(split.members_X, split.members_y)
    with_population = audit(split=split, target=target, attacks=["threshold", "rmia", "lira_offline"], n_reference=4)
    # The same records, but the team uploaded no population: what would have been it is only non-members.
    nonmembers_only = AuditData(
        members_X=split.members_X, members_y=split.members_y,
        nonmembers_X=np.concatenate([split.nonmembers_X, split.population_X]),
        nonmembers_y=np.concatenate([split.nonmembers_y, split.population_y]))
    without = audit(split=nonmembers_only, target=target, attacks=["threshold", "rmia", "lira_offline"], n_reference=4)

    assert {"rmia", "lira_offline"} <= {attack.name for attack in without.attacks}
    assert without.config["population_source"] == "nonmember_split"
    assert without.config["coverage"]["skipped"] == {}
    assert without.config["coverage"]["families"] == ["reference", "threshold"]
    a, b = with_population.headline.tpr_at_fpr[0.01], without.headline.tpr_at_fpr[0.01]
    assert a.attack in ("rmia", "lira_offline") and b.attack in ("rmia", "lira_offline")
    assert b.low <= a.value <= b.high or a.low <= b.value <= a.high, (a, b)  # within each other's interval
    loss = without.attack("loss").metrics.tpr_at_fpr[0.01].value
    assert b.value > 2 * loss  # the reference attacks, not the loss attack, set the headline


def test_a_policy_whose_online_references_cannot_be_trained_still_runs_the_rest():
    split = make_split(n_members=200, n_nonmembers=200, n_population=400, seed=4)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)

    result = audit(split=split, target=target, attacks=["loss", "rmia", "lira_online"], n_reference=1)

    assert [attack.name for attack in result.attacks] == ["loss", "rmia"]
    why = result.config["coverage"]["skipped"]["lira_online"]
    assert why.startswith("online reference models could not be trained: online reference models need at least two")
    assert any(note.startswith("skipped lira_online: online reference models") for note in result.notes)


def test_each_low_fpr_figure_carries_the_false_positives_it_rests_on():
    split = make_split(n_members=500, n_nonmembers=500, n_population=0, seed=5)
    split = replace(split, population_X=None, population_y=None)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["loss"])
    n = result.config["n_nonmembers"]
    rates = result.headline.tpr_at_fpr
    assert [rates[f].expected_false_positives for f in (0.001, 0.01, 0.1)] == [round(n * f, 3) for f in (0.001, 0.01, 0.1)]
    assert rates[0.001].reliable is False and result.to_dict()["headline"]["tpr_at_fpr"]["0.001"]["expected_false_positives"] == n * 0.001
