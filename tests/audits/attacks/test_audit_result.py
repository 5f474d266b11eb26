"""The audit's result: JSON-serialisable, in the documented shape, with progress reported along the way."""
import json

import pytest

from audits.attacks import expand_attacks
from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def run():
    split = make_split(n_members=500, n_nonmembers=400, n_population=1000, seed=8)
    target = overfit_forest(n_estimators=30).fit(split.members_X, split.members_y)
    steps: list[tuple[int, str]] = []
    result = audit(split=split, target=target, what_if_policies=["full", "label"], seed=3,
                   progress=lambda percent, step: steps.append((percent, step)))
    return result, steps


def test_result_is_json_with_the_documented_fields(run):
    result, _ = run
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data) >= {"attacks", "headline", "what_if", "recommendations", "config", "accuracy"}
    attack = data["attacks"][0]
    assert set(attack) >= {"name", "auc", "advantage", "balanced_accuracy", "epsilon_lower", "tpr_at_fpr", "roc",
                           "per_class", "top_exposed"}
    assert set(attack["tpr_at_fpr"]["0.01"]) == {"value", "low", "high", "reliable", "expected_false_positives"}
    assert set(data["headline"]["tpr_at_fpr"]["0.001"]) == {"value", "low", "high", "attack", "reliable",
                                                            "expected_false_positives", "n_compared"}


def test_evaluation_is_balanced_and_configuration_recorded(run):
    result, _ = run
    assert result.config["n_members"] == result.config["n_nonmembers"] == 400
    assert result.config["seed"] == 3 and result.config["n_reference"] == 4
    assert {"numpy", "scipy", "scikit-learn"} <= set(result.config["versions"])
    assert 0 <= result.config["rmia"]["a"] <= 1


def test_top_exposed_names_members_not_scores(run):
    result, _ = run
    for attack in result.attacks:
        assert len(attack.top_exposed) == 20
        assert all(isinstance(i, int) and 0 <= i < 500 for i in attack.top_exposed)


def test_progress_rises_to_one_hundred(run):
    _, steps = run
    percents = [p for p, _ in steps]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert any("reference" in step for _, step in steps)


def test_overfitting_is_answered_with_regularisation(run):
    result, _ = run
    assert result.accuracy["train"] - result.accuracy["test"] > 0.05
    assert "regularisation" in [r.kind for r in result.recommendations]


def test_threshold_expands_and_unknown_attacks_are_refused():
    assert expand_attacks(["threshold", "loss", "rmia"]) == ("loss", "confidence", "modified_entropy", "rmia")
    with pytest.raises(ValueError):
        expand_attacks(["shadow_models"])
