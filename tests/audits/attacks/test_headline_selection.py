"""The headline is the best of several attacks chosen on the records it is scored on (issue 28): its interval must
account for that choice, so on a placebo (every attack's true TPR at 1 % FPR is 1 %) it holds chance in at least
95 % of draws, where the chosen attack's own Clopper–Pearson interval did not."""
from __future__ import annotations

import numpy as np
import pytest

from audits.attacks.catalogue import attack_names
from audits.attacks.metrics import (
    AttackMetrics,
    auc_from_roc,
    evaluate,
    headline,
    roc_curve,
    threshold_aware_bounds,
    tpr_at_fpr,
)
from tests.audits.attacks.factories import audit, make_records, make_split, overfit_forest

CHANCE = 0.01  # a placebo's TPR at 1 % FPR
N = 1000  # members and as many non-members: 10 expected false positives at 1 %, the least a figure is reliable on


def metrics_of(members: np.ndarray, nonmembers: np.ndarray) -> AttackMetrics:
    """What `headline` reads of an attack (its ROC, TPR at 1 % FPR, sizes), without evaluate's ε bound: the
    many-draw test below would spend most of its time there."""
    roc = roc_curve(members, nonmembers)
    rate = tpr_at_fpr(roc, CHANCE, n_members=len(members), n_nonmembers=len(nonmembers))
    return AttackMetrics(auc=auc_from_roc(roc), advantage=0.0, balanced_accuracy=0.5, epsilon_lower=0.0,
                         tpr_at_fpr={CHANCE: rate}, n_members=len(members), n_nonmembers=len(nonmembers), roc=roc)


def placebo_attacks(seed: int, *, k: int = 11) -> list[tuple[str, AttackMetrics]]:
    """k attacks on a model that never saw its members: each score is a record effect all attacks share plus the
    attack's own noise (some coarse, with ties, as label-only and forest votes are), members and non-members drawn
    alike."""
    rng = np.random.default_rng([seed, 28])
    record = rng.normal(size=2 * N)
    attacks = []
    for a in range(k):
        score = record + (0.3 + 0.25 * a) * rng.normal(size=2 * N)
        if a % 4 == 3:
            score = np.round(score * 4)
        attacks.append((f"attack{a}", metrics_of(score[:N], score[N:])))
    return attacks


def covers_chance(low: float, high: float) -> bool:
    return low <= CHANCE <= high


def test_synthetic_placebos_hold_chance_in_the_selection_aware_interval_not_the_chosen_attacks_own():
    """Measured over these 300 draws of 11 attacks: the headline's interval holds 1 % in 97.3 % of them (98.4 % over
    the next 1,000 seeds); the chosen attack's own Clopper–Pearson interval in 40.7 %."""
    new, old = [], []
    for seed in range(300):
        attacks = placebo_attacks(seed)
        best = headline(attacks).tpr_at_fpr[CHANCE]
        chosen = dict(attacks)[best.attack].tpr_at_fpr[CHANCE]
        assert best.n_compared == 11 and best.value == chosen.value
        new.append(covers_chance(best.low, best.high))
        old.append(covers_chance(chosen.low, chosen.high))
    assert np.mean(new) >= 0.95, np.mean(new)
    assert np.mean(old) < 0.85, np.mean(old)


@pytest.fixture(scope="module")
def placebo_headlines() -> list[tuple[float, float, float, float]]:
    """20 placebo forests (trained on records the audit does not declare), every attack in the catalogue run on
    1,000 members and 1,000 non-members: (headline low, high, the chosen attack's own low, high) at 1 % FPR."""
    rows = []
    for seed in range(20):
        split = make_split(n_members=N, n_nonmembers=N, n_population=2 * N, seed=1000 + seed)
        X, y = make_records(n=N, seed=5000 + seed)  # the target's real, undeclared training data
        result = audit(split=split, target=overfit_forest(n_estimators=50, seed=seed).fit(X, y),
                       attacks=list(attack_names()), n_reference=2, seed=seed)
        best = result.headline.tpr_at_fpr[CHANCE]
        own = result.attack(best.attack).metrics.tpr_at_fpr[CHANCE]
        rows.append((best.low, best.high, own.low, own.high))
    return rows


@pytest.mark.long
def test_placebo_forests_hold_chance_in_the_headline_interval(placebo_headlines):
    """Measured: the headline interval holds 1 % for 19 of these 20 seeds (297 of seeds 0–299 of the same
    construction, 99 %); the chosen attack's own interval for 10 of 20 (188 of 300, 63 %)."""
    new = [covers_chance(low, high) for low, high, _, _ in placebo_headlines]
    old = [covers_chance(low, high) for _, _, low, high in placebo_headlines]
    assert sum(new) >= 19, placebo_headlines  # ≥ 95 % of 20
    assert sum(old) <= 17, placebo_headlines  # the old interval missed chance in several seeds


def test_a_single_attack_is_widened_for_the_threshold_alone():
    """With one attack there is no choice to pay for, but the threshold set on the same non-members still moves
    the TPR: the headline interval contains the attack's own and is wider."""
    rng = np.random.default_rng(3)
    metrics = evaluate(rng.normal(1.0, 1, N), rng.normal(0, 1, N))
    rate, own = headline([("loss", metrics)]).tpr_at_fpr[CHANCE], metrics.tpr_at_fpr[CHANCE]
    assert rate.n_compared == 1
    assert rate.low < own.low <= own.value <= own.high < rate.high
    assert (rate.low, rate.high) == pytest.approx(threshold_aware_bounds(metrics, CHANCE, confidence=0.95))


def test_the_interval_is_the_max_of_every_attacks_bounds_not_only_the_chosen_ones():
    """The upper bound must hold the best attack's true TPR even when a weaker-reading attack is really stronger:
    it is the largest upper bound over the attacks, so it is never below any attack's."""
    attacks = placebo_attacks(7, k=5)
    rate = headline(attacks).tpr_at_fpr[CHANCE]
    bounds = [threshold_aware_bounds(m, CHANCE, confidence=1 - 0.05 / 5) for _, m in attacks]
    assert rate.low == max(low for low, _ in bounds) and rate.high == max(high for _, high in bounds)
    assert rate.low <= rate.value <= rate.high


def test_a_leaking_model_keeps_a_lower_bound_well_above_chance():
    """The widening does not hide real leakage: members that score clearly higher keep a lower bound far above 1 %."""
    rng = np.random.default_rng(4)
    nonmembers = rng.normal(0, 1, N)
    attacks = [(f"attack{a}", evaluate(rng.normal(2.5, 1, N), nonmembers)) for a in range(6)]
    rate = headline(attacks).tpr_at_fpr[CHANCE]
    assert rate.value > 0.3 and rate.low > 0.15
