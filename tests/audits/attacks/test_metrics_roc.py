"""The ROC is exact: tied scores step together, and TPR at a target FPR never depends on array order."""
import numpy as np
import pytest

from audits.attacks.metrics import evaluate, roc_curve


def test_tied_block_is_one_diagonal_step():
    # members 3, 2, 2 and non-members 2, 1: the block at 2 holds two members and one non-member
    roc = roc_curve(np.array([3.0, 2.0, 2.0]), np.array([2.0, 1.0]))
    assert roc.fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert roc.tpr.tolist() == pytest.approx([0.0, 1 / 3, 1.0, 1.0])


def test_auc_counts_a_tie_as_half_a_win():
    metrics = evaluate(np.array([3.0, 2.0, 2.0]), np.array([2.0, 1.0]))
    # pairs: (3,2) (3,1) (2,1) (2,1) win, (2,2) (2,2) tie: (4 + 2 · ½) / 6
    assert metrics.auc == pytest.approx(5 / 6)


def test_tpr_inside_a_tied_block_lies_on_its_segment():
    metrics = evaluate(np.array([3.0, 2.0, 2.0]), np.array([2.0, 1.0]), fprs=(0.25,))
    # halfway through the block from (0, 1/3) to (0.5, 1)
    assert metrics.tpr_at_fpr[0.25].value == pytest.approx(2 / 3)


def test_all_equal_scores_are_chance_whatever_the_order():
    members_first = evaluate(np.ones(40), np.ones(60))
    assert members_first.roc.fpr.tolist() == [0.0, 1.0]
    assert members_first.auc == pytest.approx(0.5)
    assert members_first.advantage == pytest.approx(0.0)
    assert members_first.balanced_accuracy == pytest.approx(0.5)
    for fpr, rate in members_first.tpr_at_fpr.items():
        assert rate.value == pytest.approx(fpr)  # an order-based tie-break would read 1.0 here


def test_perfect_separation_reads_perfect():
    metrics = evaluate(np.array([5.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    assert metrics.roc.fpr.tolist() == [0.0, 0.0, 0.0, 1.0 / 3, 2.0 / 3, 1.0]
    assert metrics.auc == 1.0
    assert metrics.advantage == 1.0
    assert metrics.balanced_accuracy == 1.0
    assert all(rate.value == 1.0 for rate in metrics.tpr_at_fpr.values())


def test_reversed_scores_give_complementary_auc():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(1, 1, 300).round(1), rng.normal(0, 1, 200).round(1)
    assert evaluate(members, nonmembers).auc + evaluate(-members, -nonmembers).auc == pytest.approx(1.0)


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.integers(0, 5, 120).astype(float), rng.integers(0, 4, 80).astype(float)
    diff = members[:, None] - nonmembers[None, :]
    assert evaluate(members, nonmembers).auc == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError):
        evaluate(np.array([np.inf, 1.0]), np.array([0.0]))
