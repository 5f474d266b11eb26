"""The reference models' pool: the population pool, then the members an audit does not evaluate. Those members
make reference models about the target's size; they must never be an evaluation record (or equal one), and never
stand in for non-members (RMIA's z, the quantile attack's population)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from audits.attacks.audit import select_records
from audits.attacks.records import record_keys
from tests.audits.attacks.factories import audit, make_split, overfit_forest


def _keys(X: np.ndarray) -> set:
    return set(record_keys(np.asarray(X, np.float64)).tolist())


def test_members_left_unevaluated_join_the_pool_and_never_an_evaluation_record():
    split = make_split(n_members=600, n_nonmembers=200, n_population=400, seed=11)
    # One member equal to a non-member (all 200 non-members are evaluated): it may not train a reference model.
    members_X = split.members_X.copy()
    members_X[5] = split.nonmembers_X[7]
    split = replace(split, members_X=members_X)

    records = select_records(split, max_per_side=None, seed=0)

    evaluated = set(records.keys.tolist())
    population, members = _keys(split.population_X), _keys(split.members_X)
    n_population_pool = len(records.pool_X) - records.pool_members
    assert records.is_member.sum() == 200
    assert records.pool_members == 600 - 200 - 1  # the unevaluated members but the copy of a non-member
    assert _keys(records.pool_X[n_population_pool:]) <= members - evaluated
    assert _keys(records.pool_X) & evaluated == set()
    # Only population records stand in for non-members.
    assert _keys(records.population_pool[0]) <= population and len(records.population_pool[0]) == n_population_pool
    assert _keys(records.z_X) <= population
    # Label-only's noise scales come from the population, as before.
    population_rows = np.concatenate([records.population_pool[0], records.z_X])
    assert np.allclose(records.feature_std, population_rows.std(axis=0))


def test_without_any_population_no_member_joins_a_pool():
    split = make_split(n_members=300, n_nonmembers=30, n_population=0, seed=12)
    split = replace(split, population_X=None, population_y=None)
    records = select_records(split, max_per_side=None, seed=0)
    assert records.population_source == "none"
    assert records.pool_members == 0 and len(records.pool_X) == 0


def test_reference_models_train_on_the_members_too_and_the_result_says_so():
    split = make_split(n_members=900, n_nonmembers=300, n_population=300, seed=13)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)

    result = audit(split=split, target=target, attacks=["loss", "rmia", "quantile"], n_reference=2)

    config = result.config
    assert config["n_reference_pool_members"] == 600
    population_pool = config["n_reference_pool"]
    assert population_pool + config["n_population_z"] == 300
    # Each offline reference model trains on half of the pool, members included: about 450 records, not ~130.
    assert config["reference_train_size"]["offline"] == round((population_pool + 600) / 2)
    # The quantile attack learns the non-member score from the population pool alone.
    assert result.attack("quantile").details["pool_records"] == population_pool
    assert any(note.startswith("the 600 members the audit did not evaluate joined") for note in result.notes)
