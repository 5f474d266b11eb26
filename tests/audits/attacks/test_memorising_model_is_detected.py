"""A model that memorised coin-flip labels must read as badly leaking."""
import pytest

from tests.audits.attacks.factories import audit, make_split, overfit_forest


@pytest.fixture(scope="module")
def memorised():
    split = make_split(n_members=1000, n_nonmembers=1000, n_population=2000, random_labels=True)
    target = overfit_forest(n_estimators=100).fit(split.members_X, split.members_y)
    return audit(split=split, target=target, attacks=["threshold", "rmia", "rmia_online", "lira_offline"])


def test_strongest_attack_finds_half_the_members_at_one_percent_fpr(memorised):
    best = memorised.headline.tpr_at_fpr[0.01]
    assert best.value >= 0.5
    assert best.reliable


def test_every_attack_beats_chance_clearly(memorised):
    for result in memorised.attacks:
        assert result.metrics.auc > 0.8, result.name
        assert result.metrics.tpr_at_fpr[0.01].low > 0.01, result.name


def test_epsilon_bound_rules_out_strong_privacy(memorised):
    assert memorised.headline.epsilon_lower > 1.0
    assert any(r.kind == "differential_privacy" for r in memorised.recommendations)
