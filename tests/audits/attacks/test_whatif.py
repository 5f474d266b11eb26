"""What-if: the same attacks under each output policy, beside what each policy costs in accuracy."""
import pytest

from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def table():
    split = make_split(n_members=800, n_nonmembers=800, n_population=1600, seed=7)
    target = overfit_forest(n_estimators=50).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["threshold", "rmia", "lira_offline"],
                   what_if_policies=["full", "round:2", "round:1", "label", "noise:0.05"])
    return result, {row.policy: row for row in result.what_if}


def test_every_policy_gets_a_row_with_accuracy_and_leakage(table):
    _, rows = table
    assert list(rows) == ["full", "round:2", "round:1", "label", "noise:0.05"]
    for row in rows.values():
        assert 0.5 < row.accuracy <= 1.0 and row.tpr_at_1pct_fpr is not None and row.auc is not None


def test_the_full_row_is_the_audit_itself(table):
    result, rows = table
    assert rows["full"].tpr_at_1pct_fpr == result.headline.tpr_at_fpr[0.01].value
    assert rows["full"].accuracy_drop == 0.0


def test_label_policy_runs_label_only_and_keeps_accuracy(table):
    _, rows = table
    assert rows["label"].attacks == ("label_only",)
    assert rows["label"].accuracy == rows["full"].accuracy  # the top-1 label is what accuracy uses anyway
    assert rows["label"].tpr_at_1pct_fpr < rows["full"].tpr_at_1pct_fpr


def test_two_decimals_leak_like_full_probabilities_on_a_50_tree_forest(table):
    _, rows = table
    # votes are multiples of 0.02: rounding to 2 decimals changes nothing a caller sees
    assert rows["round:2"].tpr_at_1pct_fpr == rows["full"].tpr_at_1pct_fpr
