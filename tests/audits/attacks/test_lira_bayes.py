"""Offline LiRA with a Bayesian per-record variance (Brännvall 2026): finds what an overfit forest leaks, reads
chance on a placebo, and its empirical-Bayes prior says how far each record's variance is shrunk."""
from __future__ import annotations

import numpy as np
import pytest

from audits.attacks.lira import lira_offline, lira_offline_bayes, variance_prior
from tests.audits.attacks.factories import audit, make_records, make_split, overfit_forest


def test_it_beats_the_loss_attack_on_an_overfit_forest():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000, seed=4)
    target = overfit_forest(n_estimators=60).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["loss", "lira_bayes"], n_reference=4)
    loss, bayes = result.attack("loss").metrics, result.attack("lira_bayes").metrics
    assert bayes.auc > loss.auc + 0.02
    assert bayes.tpr_at_fpr[0.01].low > loss.tpr_at_fpr[0.01].high  # not just a draw


def test_it_reads_chance_when_the_members_were_never_seen():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000, seed=5)
    X, y = make_records(n=1500, seed=105)  # the target's real, undeclared training data
    target = overfit_forest(n_estimators=60).fit(X, y)
    bayes = audit(split=split, target=target, attacks=["lira_bayes"], n_reference=4).attack("lira_bayes").metrics
    # As for BASE: ±5 null standard deviations on the AUC, and an interval that a tied score cannot meet.
    assert 0.45 < bayes.auc < 0.56
    assert bayes.tpr_at_fpr[0.01].low < 0.01 < bayes.tpr_at_fpr[0.01].high


def _reference_phi(rng: np.random.Generator, *, sigma: np.ndarray, n_models: int) -> np.ndarray:
    return rng.normal(0.0, 1.0, size=(n_models, len(sigma))) * sigma


def test_the_prior_is_flat_when_every_record_has_the_same_variance():
    rng = np.random.default_rng(0)
    phi = _reference_phi(rng, sigma=np.full(5000, 0.7), n_models=4)
    d0, s0_squared = variance_prior(phi.var(axis=0, ddof=1), np.full(5000, 4), 0.7)
    assert d0 > 50  # no spread beyond sampling noise: (nearly) every record gets the common variance
    assert abs(np.sqrt(s0_squared) - 0.7) < 0.05


def test_the_prior_recovers_how_much_records_differ():
    rng = np.random.default_rng(1)
    d0_true, s0_true = 8.0, 0.5
    sigma = np.sqrt(d0_true * s0_true**2 / rng.chisquare(d0_true, size=20000))  # scaled inverse χ²
    phi = _reference_phi(rng, sigma=sigma, n_models=4)
    d0, s0_squared = variance_prior(phi.var(axis=0, ddof=1), np.full(20000, 4), 0.5)
    assert 5.0 < d0 < 13.0 and abs(np.sqrt(s0_squared) - s0_true) < 0.05


def test_records_the_clip_made_identical_are_left_out_of_the_prior():
    rng = np.random.default_rng(2)
    phi = _reference_phi(rng, sigma=np.full(3000, 0.7), n_models=4)
    phi[:, :1000] = 2.0  # every reference model gave the clipped maximum
    var = phi.var(axis=0, ddof=1)
    assert variance_prior(var, np.full(3000, 4), 0.7)[0] > 50


def test_a_noisy_record_is_judged_against_its_own_spread_once_the_prior_allows():
    rng = np.random.default_rng(3)
    sigma = np.where(np.arange(4000) < 2000, 0.3, 3.0)  # two kinds of record, a factor of ten apart
    phi = _reference_phi(rng, sigma=sigma, n_models=8)
    target = phi.mean(axis=0)
    target[[0, 2000]] += 1.5  # the same excess over the OUT mean, on a quiet record and on a noisy one
    scores, (d0, _) = lira_offline_bayes(target_phi=target, reference_phi=phi)
    assert np.isfinite(d0) and np.all(np.isfinite(scores))
    assert scores[0] > scores[2000]  # 1.5 is 5 σ for a quiet record, half a σ for a noisy one
    pooled = lira_offline(target_phi=target, reference_phi=phi)
    assert pooled[0] == pytest.approx(pooled[2000])  # one pooled σ cannot tell them apart
