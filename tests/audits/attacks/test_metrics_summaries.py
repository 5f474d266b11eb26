"""Headline, per-class slices, most-exposed records and ROC thinning."""
import numpy as np
import pytest

from audits.attacks.metrics import class_slices, downsample_roc, evaluate, headline, roc_curve, top_exposed


def test_headline_takes_the_best_attack_at_each_fpr_and_names_it():
    rng = np.random.default_rng(0)
    nonmembers = rng.normal(size=3000)
    # "tail" is strong only at the top of its scores; "broad" is better on average
    tail = evaluate(np.concatenate([rng.normal(6, 1, 600), rng.normal(0, 1, 2400)]), nonmembers)
    broad = evaluate(rng.normal(0.9, 1, 3000), nonmembers)
    summary = headline([("tail", tail), ("broad", broad)])
    assert summary.tpr_at_fpr[0.001].attack == "tail"
    assert summary.tpr_at_fpr[0.001].value == tail.tpr_at_fpr[0.001].value
    assert summary.auc_attack == "broad" and summary.auc == broad.auc
    for fpr, rate in summary.tpr_at_fpr.items():
        assert rate.value == max(tail.tpr_at_fpr[fpr].value, broad.tpr_at_fpr[fpr].value)


def test_headline_serialises_in_the_documented_shape():
    rng = np.random.default_rng(0)
    shape = headline([("loss", evaluate(rng.normal(1, 1, 100), rng.normal(0, 1, 100)))]).to_dict()
    assert set(shape["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"}
    assert set(shape["tpr_at_fpr"]["0.01"]) == {"value", "low", "high", "attack", "reliable", "expected_false_positives",
                                                "n_compared"}
    assert shape["tpr_at_fpr"]["0.01"]["n_compared"] == 1  # the interval is simultaneous over the attacks that ran
    assert shape["tpr_at_fpr"]["0.01"]["expected_false_positives"] == 1.0  # 100 non-members × 1 %
    assert {"auc", "epsilon_lower"} <= set(shape)


def test_class_slices_measure_within_each_true_class():
    rng = np.random.default_rng(0)
    member_y, nonmember_y = np.repeat([0, 1], 500), np.repeat([0, 1], 500)
    # only class 1 leaks
    members = np.where(member_y == 1, rng.normal(3, 1, 1000), rng.normal(0, 1, 1000))
    nonmembers = rng.normal(0, 1, 1000)
    slices = {s.label: s for s in class_slices(members, member_y, nonmembers, nonmember_y)}
    assert slices[0].auc == pytest.approx(0.5, abs=0.06)
    assert slices[1].auc > 0.95
    assert slices[1].n_members == 500 and slices[1].n_nonmembers == 500


def test_top_exposed_names_records_by_index_highest_first():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    exposed = top_exposed(scores, k=3, tie_keys=np.array([5, 2, 0, 1, 9]))
    assert exposed == [3, 1, 2]  # the tie at 0.9 follows the content keys, not positions
    assert all(isinstance(i, int) for i in exposed)


def test_downsampled_roc_keeps_every_low_fpr_point():
    rng = np.random.default_rng(0)
    roc = roc_curve(rng.normal(1, 1, 20000), rng.normal(0, 1, 20000))
    small = downsample_roc(roc, max_points=100)
    low = roc.fpr <= 0.01
    np.testing.assert_array_equal(small.fpr[small.fpr <= 0.01], roc.fpr[low])
    np.testing.assert_array_equal(small.tpr[small.fpr <= 0.01], roc.tpr[low])
    assert len(small.fpr) <= low.sum() + 102
    assert (small.fpr[-1], small.tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(small.fpr) >= 0) and np.all(np.diff(small.tpr) >= 0)
