"""BASE (Lassila et al. 2025): finds what an overfit forest leaks, reads chance on a placebo, and at temperature 1
orders records exactly as RMIA does, the setting at which the paper shows the two are the same attack."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from audits.attacks.bayes_optimal import BaseSettings, base_scores, calibrate_temperature
from audits.attacks.rmia import A_GRID, RmiaSettings, rmia_scores
from tests.audits.attacks.factories import audit, make_records, make_split, overfit_forest

CLIP = 0.01


def test_it_beats_the_loss_attack_on_an_overfit_forest():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000, seed=4)
    target = overfit_forest(n_estimators=60).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["loss", "base"], n_reference=4)
    loss, base = result.attack("loss").metrics, result.attack("base").metrics
    assert base.auc > loss.auc + 0.05
    assert base.tpr_at_fpr[0.01].low > loss.tpr_at_fpr[0.01].high  # not just a draw
    assert result.attack("base").details["temperature"] > 0


def test_it_reads_chance_when_the_members_were_never_seen():
    split = make_split(n_members=1500, n_nonmembers=1500, n_population=3000, seed=5)
    X, y = make_records(n=1500, seed=105)  # the target's real, undeclared training data
    target = overfit_forest(n_estimators=60).fit(X, y)
    base = audit(split=split, target=target, attacks=["base"], n_reference=4).attack("base").metrics
    # The null AUC's standard deviation with 1,500 a side is 0.011: the band is about ±5 of them. The interval
    # check fails for a constant or tied score (TPR 0 at 1 % FPR), so chance has to be earned.
    assert 0.45 < base.auc < 0.56
    assert base.tpr_at_fpr[0.01].low < 0.01 < base.tpr_at_fpr[0.01].high


@pytest.fixture(scope="module")
def outputs() -> dict[str, np.ndarray]:
    """True-class probabilities with a forest's granularity: target and 4 OUT references on x, and on 500 z."""
    rng = np.random.default_rng(0)

    def votes(size: tuple[int, ...]) -> np.ndarray:
        return np.round(np.clip(rng.beta(4, 1.5, size=size), 0, 1) * 100) / 100

    return {"target_px": votes((2000,)), "reference_px": votes((4, 2000)), "target_pz": votes((500,)),
            "reference_pz": votes((4, 500))}


@pytest.mark.parametrize("a", A_GRID)
def test_at_temperature_one_it_orders_records_as_rmia_does(outputs, a):
    rmia = rmia_scores(**outputs, a=a, clip=CLIP).score
    base = base_scores(target_p=outputs["target_px"], reference_p=outputs["reference_px"], a=a, temperature=1.0,
                       clip=CLIP)
    assert spearmanr(rmia, base).statistic > 0.99
    # Strictly: every pair of records is ordered the same way (RMIA splits its ties by the same ratio), but for
    # pairs whose ratios agree to rounding error, which the two compute by different sums.
    order = np.lexsort((rmia, np.round(base, 9)))
    assert np.all(np.diff(rmia[order]) >= 0)


def test_another_temperature_is_another_attack(outputs):
    rmia = rmia_scores(**outputs, a=0.3, clip=CLIP).score
    tempered = base_scores(target_p=outputs["target_px"], reference_p=outputs["reference_px"], a=0.3,
                           temperature=4.0, clip=CLIP)
    order = np.lexsort((rmia, np.round(tempered, 9)))
    assert not np.all(np.diff(rmia[order]) >= 0)  # some records change places beyond rounding error


def test_the_temperature_is_chosen_on_the_reference_models_from_the_grid():
    rng = np.random.default_rng(1)
    pool_in = rng.random((4, 600)) < 0.5
    pool_p = np.clip(0.6 + 0.3 * pool_in + rng.normal(0, 0.05, (4, 600)), 0, 1)
    temperature, tprs = calibrate_temperature(pool_p=pool_p, pool_in=pool_in, a=0.3, clip=CLIP)
    assert temperature in tprs and tprs[temperature] == max(tprs.values()) > 0.5


def test_a_fixed_temperature_and_a_are_used_as_given():
    split = make_split(n_members=300, n_nonmembers=300, n_population=600, seed=6)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)
    result = audit(split=split, target=target, attacks=["base"], n_reference=2, base=BaseSettings(temperature=2.0),
                   rmia=RmiaSettings(a=0.5))
    details = result.attack("base").details
    assert details["temperature"] == 2.0 and details["a"] == 0.5 and "temperature_calibration_tpr" not in details
    assert result.config["base"] == {"a": 0.5, "temperature": 2.0}
