"""RMIA: strong with a single reference model; `a` is calibrated on reference models only."""
import numpy as np
import pytest

from audits.attacks.rmia import A_GRID, DEFAULT_A, calibrate_a, rmia_scores
from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def one_reference():
    split = make_split(n_members=1000, n_nonmembers=1000, n_population=2000, seed=3)
    target = overfit_forest(n_estimators=50).fit(split.members_X, split.members_y)
    return audit(split=split, target=target, attacks=["loss", "rmia"], n_reference=1)


def test_rmia_with_one_reference_model_beats_loss_at_one_percent_fpr(one_reference):
    rmia = one_reference.attack("rmia").metrics.tpr_at_fpr[0.01]
    loss = one_reference.attack("loss").metrics.tpr_at_fpr[0.01]
    assert rmia.value >= loss.value
    assert rmia.low > loss.high  # not just a draw


def test_one_reference_model_uses_the_default_a(one_reference):
    assert one_reference.attack("rmia").details["a"] == DEFAULT_A


def test_calibrated_a_comes_from_the_grid():
    rng = np.random.default_rng(0)
    pool_in = rng.random((3, 400)) < 0.5
    pool_p = np.clip(0.6 + 0.3 * pool_in + rng.normal(0, 0.05, (3, 400)), 0, 1)
    a, aucs = calibrate_a(pool_p=pool_p, pool_in=pool_in, reference_pz=np.clip(rng.normal(0.6, 0.05, (3, 200)), 0, 1))
    assert a in A_GRID and set(aucs) == set(A_GRID)
    assert aucs[a] == max(aucs.values()) > 0.9


def test_score_is_the_fraction_of_population_beaten_with_ties_split_by_the_ratio():
    reference_px = np.full((1, 3), 0.5)
    scores = rmia_scores(target_px=np.array([0.9, 0.8, 0.1]), reference_px=reference_px,
                         target_pz=np.array([0.2, 0.3, 0.4, 0.95]), reference_pz=np.full((1, 4), 0.5), a=0.0)
    # x = 0.9 and 0.8 each beat three of the four z; 0.1 beats none
    assert np.floor(scores.score * 4).tolist() == [3, 3, 0]
    assert scores.score[0] > scores.score[1] > scores.score[2]
