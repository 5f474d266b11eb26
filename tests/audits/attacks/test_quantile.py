"""The quantile-regression attack (no reference models): it finds what a leaking model leaks, reads chance on a
placebo, is skipped with a reason when the population is too small, and runs beside stand-in attacks."""
from __future__ import annotations

import numpy as np

from tests.audits.attacks.factories import audit, make_split, overfit_forest


def test_it_beats_the_loss_attack_on_an_overfit_forest():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000)
    target = overfit_forest(n_estimators=60).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["loss", "quantile"])
    loss, quantile = result.attack("loss").metrics, result.attack("quantile").metrics
    assert quantile.auc > 0.6 and quantile.auc > loss.auc
    assert quantile.tpr_at_fpr[0.01].low > 0.01
    assert result.config["coverage"]["families"] == ["regression", "threshold"]
    assert result.attack("quantile").details["pool_records"] > 2000


def test_it_reads_chance_when_the_members_were_never_seen():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000, seed=3)
    rng = np.random.default_rng(5)
    unseen_X = rng.normal(size=split.members_X.shape)
    unseen_y = (unseen_X @ np.random.default_rng(1234).normal(size=unseen_X.shape[1]) > 0).astype(np.int64)
    target = overfit_forest(n_estimators=60).fit(unseen_X, unseen_y)  # a placebo: trained on other records
    quantile = audit(split=split, target=target, attacks=["quantile"]).attack("quantile").metrics
    assert 0.45 < quantile.auc < 0.56
    assert quantile.tpr_at_fpr[0.01].low < 0.01 < quantile.tpr_at_fpr[0.01].high


def test_it_is_skipped_with_a_reason_without_enough_population():
    split = make_split(n_members=300, n_nonmembers=300, n_population=100)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["loss", "quantile"])
    assert [a.name for a in result.attacks] == ["loss"]
    assert "quantile" in result.config["coverage"]["skipped"] and any("skipped quantile" in n for n in result.notes)
