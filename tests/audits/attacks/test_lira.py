"""LiRA: online (IN and OUT models) is at least as strong as offline on the same target."""
import numpy as np
import pytest

from audits.attacks.lira import lira_offline, lira_online
from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def result():
    split = make_split(n_members=1000, n_nonmembers=1000, n_population=2000, seed=2)
    target = overfit_forest(n_estimators=50).fit(split.members_X, split.members_y)
    return audit(split=split, target=target, attacks=["loss", "lira_offline", "lira_online"], n_reference=8)


def test_online_lira_is_at_least_as_strong_as_offline(result):
    online, offline = result.attack("lira_online").metrics, result.attack("lira_offline").metrics
    assert online.auc >= offline.auc + 0.02
    assert online.tpr_at_fpr[0.01].value >= offline.tpr_at_fpr[0.01].value


def test_lira_beats_the_loss_threshold_at_low_fpr(result):
    loss = result.attack("loss").metrics.tpr_at_fpr[0.01].value
    assert result.attack("lira_offline").metrics.tpr_at_fpr[0.01].value >= 2 * loss


def test_offline_score_is_one_sided():
    reference = np.zeros((4, 3)) + np.array([[0.1], [-0.1], [0.2], [-0.2]])
    scores = lira_offline(target_phi=np.array([-5.0, 0.0, 5.0]), reference_phi=reference)
    assert scores[0] < scores[1] < scores[2]  # far below the OUT mean is evidence of non-membership


def test_online_score_prefers_the_in_distribution():
    phi = np.array([[3.0, 3.0], [3.2, 2.8], [0.0, 0.0], [0.2, -0.2]])
    in_mask = np.array([[True, True], [True, True], [False, False], [False, False]])
    scores = lira_online(target_phi=np.array([3.0, 0.0]), reference_phi=phi, in_mask=in_mask)
    assert scores[0] > 0 > scores[1]


def test_per_record_variance_is_floored():
    reference = np.ones((4, 2))  # every OUT model gives the same phi: a zero per-record variance
    reference[:, 1] += np.array([0.0, 1.0, -1.0, 0.5])
    scores = lira_offline(target_phi=np.array([1.5, 1.5]), reference_phi=reference, variance="per_record")
    assert np.all(np.isfinite(scores))
