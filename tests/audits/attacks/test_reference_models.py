"""Reference models: deterministic from a seed, exact IN/OUT masks, reusable, blind to array order."""
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from audits.attacks.reference import balanced_membership, reference_proba, train_reference_models
from tests.audits.attacks.factories import audit, make_split, overfit_forest


def _train(pool_X, pool_y, target_X, target_y, *, online, seed=7, n_models=4):
    return train_reference_models(estimator=RandomForestClassifier(n_estimators=10, random_state=0),
                                  pool_X=pool_X, pool_y=pool_y, target_X=target_X, target_y=target_y,
                                  n_models=n_models, seed=seed, online=online)


def test_same_seed_same_models_and_masks():
    split = make_split(n_members=100, n_nonmembers=100, n_population=300)
    first = _train(split.population_X, split.population_y, split.members_X, split.members_y, online=True)
    again = _train(split.population_X, split.population_y, split.members_X, split.members_y, online=True)
    np.testing.assert_array_equal(first.pool_in, again.pool_in)
    np.testing.assert_array_equal(first.target_in, again.target_in)
    np.testing.assert_array_equal(reference_proba(first.models, split.nonmembers_X, 2),
                                  reference_proba(again.models, split.nonmembers_X, 2))
    other = _train(split.population_X, split.population_y, split.members_X, split.members_y, online=True, seed=8)
    assert not np.array_equal(first.target_in, other.target_in)


def test_online_targets_are_in_for_exactly_half_of_the_models():
    split = make_split(n_members=200, n_nonmembers=0, n_population=300)
    refs = _train(split.population_X, split.population_y, split.members_X, split.members_y, online=True)
    assert (refs.target_in.sum(axis=0) == 2).all()
    assert (refs.pool_in.sum(axis=0) == 2).all()


def test_offline_models_never_train_on_targets():
    split = make_split(n_members=200, n_nonmembers=0, n_population=300)
    refs = _train(split.population_X, split.population_y, split.members_X, split.members_y, online=False)
    assert refs.target_in.shape == (4, 200) and not refs.target_in.any()
    assert not refs.online


def test_membership_follows_records_not_positions():
    keys = np.arange(1, 501, dtype=np.uint64) * np.uint64(2654435761)
    order = np.random.default_rng(0).permutation(500)
    mask = balanced_membership(keys, n_models=4, seed=0, purpose="x")
    np.testing.assert_array_equal(balanced_membership(keys[order], n_models=4, seed=0, purpose="x"), mask[:, order])


def test_a_single_model_trains_on_about_half_the_pool():
    keys = np.arange(1, 4001, dtype=np.uint64)
    mask = balanced_membership(keys, n_models=1, seed=0, purpose="x")
    assert 0.45 < mask.mean() < 0.55


def test_fitted_references_are_reused_by_a_later_audit():
    split = make_split(n_members=300, n_nonmembers=300, n_population=600)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)
    first = audit(split=split, target=target, attacks=["rmia"], n_reference=2)
    again = audit(split=split, target=target, attacks=["rmia"], n_reference=2,
                  references={"offline": first.references["offline"]})
    assert any("reused" in note for note in again.notes)
    assert "reference_offline" not in again.timings
    assert again.attack("rmia").metrics.auc == first.attack("rmia").metrics.auc
