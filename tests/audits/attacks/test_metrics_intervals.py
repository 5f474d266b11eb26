"""Clopper–Pearson intervals, the reliability rule and the empirical ε bound (Jagielski et al. 2020)."""
import numpy as np
import pytest

from audits.attacks.metrics import (
    DELTA,
    MIN_EXPECTED_FALSE_POSITIVES,
    clopper_pearson,
    epsilon_lower_bound,
    evaluate,
)


def test_clopper_pearson_matches_published_values():
    low, high = clopper_pearson(5, 10)
    assert (float(low), float(high)) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    low, high = clopper_pearson(1, 20)
    assert (float(low), float(high)) == pytest.approx((0.0013, 0.2487), abs=1e-4)


def test_clopper_pearson_edges_have_closed_forms():
    low, high = clopper_pearson(0, 10)
    assert float(low) == 0.0
    assert float(high) == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = clopper_pearson(10, 10)
    assert float(low) == pytest.approx(0.025 ** (1 / 10))
    assert float(high) == 1.0


def test_tpr_interval_brackets_the_value():
    rng = np.random.default_rng(0)
    metrics = evaluate(rng.normal(1, 1, 500), rng.normal(0, 1, 500))
    for rate in metrics.tpr_at_fpr.values():
        assert rate.low <= rate.value <= rate.high


def test_low_fpr_is_unreliable_without_enough_nonmembers():
    rng = np.random.default_rng(0)
    n_nonmembers = 2000
    metrics = evaluate(rng.normal(1, 1, 2000), rng.normal(0, 1, n_nonmembers))
    for fpr, rate in metrics.tpr_at_fpr.items():
        assert rate.reliable == (n_nonmembers * fpr >= MIN_EXPECTED_FALSE_POSITIVES)
    assert not metrics.tpr_at_fpr[0.001].reliable and metrics.tpr_at_fpr[0.01].reliable


def test_perfect_attack_gives_the_finite_bound_of_the_formula():
    n = 100
    bound = epsilon_lower_bound(np.arange(n) + 1000.0, np.arange(n, dtype=float))
    upper = 1 - 0.025 ** (1 / n)  # CP upper end for 0 errors out of n, on both FPR and FNR
    assert np.isfinite(bound)
    assert bound == pytest.approx(np.log((1 - DELTA - upper) / upper))


def test_bound_grows_with_evidence():
    small = epsilon_lower_bound(np.full(50, 1.0), np.zeros(50))
    large = epsilon_lower_bound(np.full(5000, 1.0), np.zeros(5000))
    assert 0 < small < large


def test_chance_scores_prove_nothing():
    assert epsilon_lower_bound(np.ones(500), np.ones(500)) == 0.0
    rng = np.random.default_rng(3)
    assert epsilon_lower_bound(rng.normal(size=2000), rng.normal(size=2000)) < 0.5
