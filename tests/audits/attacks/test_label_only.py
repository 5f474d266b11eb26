"""Label-only (Choquette-Choo et al. 2021): labels alone expose a memorising model."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from audits.attacks.label_only import LabelOnlyConfig, label_only_scores, neighbourhood_queries
from tests.audits.attacks.factories import audit, make_split


@pytest.fixture(scope="module")
def memorising_under_label_policy():
    split = make_split(n_members=1000, n_nonmembers=1000, n_population=1000, random_labels=True, seed=6)
    target = KNeighborsClassifier(n_neighbors=1).fit(split.members_X, split.members_y)
    return audit(split=split, target=target, output_policy="label")


def test_label_only_detects_a_memorising_model(memorising_under_label_policy):
    result = memorising_under_label_policy.attack("label_only").metrics
    assert result.auc > 0.8
    assert result.tpr_at_fpr[0.01].low > 0.02  # clearly above the chance level of 1 %


def test_label_policy_runs_only_the_label_only_attack(memorising_under_label_policy):
    assert [a.name for a in memorising_under_label_policy.attacks] == ["label_only"]
    assert any("labels only" in note for note in memorising_under_label_policy.notes)


def test_needs_only_a_predict_callable():
    split = make_split(n_members=100, n_nonmembers=100, n_population=0)
    calls = []

    def predict(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return (X[:, 0] > 0).astype(int)

    config = LabelOnlyConfig(n_neighbours=4, radii=(0.1, 0.5))
    scores = label_only_scores(predict=predict, X=split.members_X, y=split.members_y,
                               feature_std=split.members_X.std(axis=0), config=config)
    assert sum(calls) == scores.queries == 100 * (1 + 2 * 4)
    assert scores.score.shape == (100,)


def test_a_record_gets_the_same_noise_wherever_it_sits():
    X = np.random.default_rng(0).normal(size=(50, 3))
    config = LabelOnlyConfig(n_neighbours=2, radii=(0.1,))
    queries = neighbourhood_queries(X, feature_std=np.ones(3), config=config).reshape(-1, 3)
    reversed_queries = neighbourhood_queries(X[::-1], feature_std=np.ones(3), config=config)
    np.testing.assert_array_equal(queries[50:].reshape(50, 2, 3)[::-1], reversed_queries[50:].reshape(50, 2, 3))
