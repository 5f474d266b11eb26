"""Online RMIA: reference models of about the target's size, half of which trained on each evaluation record,
chosen by the record's content and never by its membership."""
import numpy as np
import pytest

from audits.attacks.rmia import rmia_scores
from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def small_population():
    # A population much smaller than the target's training set: offline references get half of it only.
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=400, seed=5)
    target = overfit_forest(n_estimators=50).fit(split.members_X, split.members_y)
    return audit(split=split, target=target, attacks=["loss", "rmia", "rmia_online"], n_reference=4)


def test_online_references_add_half_the_evaluation_records_to_what_offline_ones_train_on(small_population):
    sizes = small_population.config["reference_train_size"]
    n_evaluated = small_population.config["n_members"] + small_population.config["n_nonmembers"]
    assert sizes["online"] == sizes["offline"] + n_evaluated // 2


def test_members_and_non_members_are_each_in_for_exactly_half_the_online_models(small_population):
    target_in = small_population.references["online"].target_in
    n_members = small_population.config["n_members"]
    # Every record, member or not, is IN for K/2 models: the draw cannot carry the membership label.
    assert (target_in[:, :n_members].sum(axis=0) == 2).all() and (target_in[:, n_members:].sum(axis=0) == 2).all()


def test_online_rmia_beats_offline_rmia_when_the_population_is_small(small_population):
    online, offline = small_population.attack("rmia_online").metrics, small_population.attack("rmia").metrics
    loss = small_population.attack("loss").metrics
    assert online.auc > offline.auc > loss.auc
    assert online.tpr_at_fpr[0.01].value >= offline.tpr_at_fpr[0.01].value


def test_pr_x_weighs_in_and_out_models_equally_whatever_their_count():
    # Three models, two IN: record 0's IN models say 0.9, its OUT model 0.3, so Pr(x) = ½(0.9 + 0.3) = 0.6,
    # not the plain mean 0.7; record 1's models all say 0.6. Equal target answers must then tie.
    reference_px = np.array([[0.9, 0.6], [0.9, 0.6], [0.3, 0.6]])
    in_mask = np.array([[True, True], [True, True], [False, False]])
    scores = rmia_scores(target_px=np.array([0.8, 0.8]), reference_px=reference_px, in_mask=in_mask,
                         target_pz=np.array([0.5, 0.7]), reference_pz=np.full((3, 2), 0.5), a=0.3, online=True)
    np.testing.assert_allclose(scores.log_ratio, np.log(0.8 / 0.6))
