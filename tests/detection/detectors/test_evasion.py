"""The undetected attacker's budget read from a calibration (`detectors/evasion.py`): the search finds the largest quiet
rate, tighter thresholds give fewer records, and the predicted rate stays quiet against the real detectors while
a few times it does not."""
from __future__ import annotations

import numpy as np
import pytest

import monitor.demo.traffic as traffic
import monitor.detection.detectors as detectors
from monitor.detection.detectors import evasion

DAY = 86_400.0


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(6000, 4)) * [10, 1000, 3, 1] + [40, 5000, 5, 0]
    members, population = pool[:1500], pool[1500:]
    day = traffic.benign_traffic(population, n_clients=60, seed=1, start=0.0, duration=DAY)
    batch = detectors.QueryBatch(query_ids=np.arange(len(day)), client_ids=day.client_ids, timestamps=day.timestamps,
                                 features=day.features, outputs=rng.dirichlet([1, 1], len(day)))
    context = detectors.ModelContext.from_reference(day.features, n_classes=2, fingerprint_key=b"k" * 32,
                                                    members=members)
    context.calibration = detectors.calibrate(batch, context)
    return context, members, population, day


def test_the_search_finds_the_largest_quiet_rate(world):
    context, *_ = world
    thresholds = evasion.Thresholds.from_calibration(context.calibration)
    assert thresholds.proximity is not None and thresholds.window_count is not None
    for book in (0, 20, 200):
        for blocks in (1, 12):
            found = evasion.quiet_rate(thresholds, book=book, cap=600, blocks=blocks)
            brute = next((rate for rate in range(600, 0, -1)
                          if evasion.quiet(thresholds, rate, book=book, blocks=blocks)), 0)
            assert found == brute, (book, blocks)
    assert evasion.quiet_rate(thresholds, book=20, cap=5) <= 5


def test_a_more_sensitive_detector_lets_fewer_records_through(world):
    context, *_ = world
    calibrated = evasion.Thresholds.from_calibration(context.calibration)
    p = calibrated.proximity

    def with_budget(factor: float) -> evasion.Thresholds:
        return evasion.Thresholds(window_count=calibrated.window_count, windows_per_day=calibrated.windows_per_day,
                                  proximity=evasion.BlockTest(p.base_rate, p.rho, p.blocks_per_day,
                                                              p.false_alarm_rate * factor),
                                  boundary=calibrated.boundary, sweep_records=calibrated.sweep_records)

    # A larger false-alarm budget lowers the hit threshold: fewer records pass. A smaller one raises it.
    assert evasion.quiet_rate(with_budget(100), book=30) < evasion.quiet_rate(calibrated, book=30) \
        < evasion.quiet_rate(with_budget(1e-4), book=30)
    # A detector left uncalibrated (no members given) does not bind.
    free = evasion.Thresholds(window_count=None, windows_per_day=144.0, proximity=None, boundary=None, sweep_records=None)
    assert evasion.quiet_rate(free, book=0, cap=777) == 777


def _attacker(members, population, *, rate, book, seed, start):
    """One account-day: `rate` candidates (half members), each once, and `book` cover records, spread over 24 hours."""
    rng = np.random.default_rng(seed)
    half = rate // 2
    rows = np.concatenate([members[rng.choice(len(members), half, replace=False)],
                           population[rng.choice(len(population), rate - half + book, replace=False)]])
    times = start + np.sort(rng.uniform(0, DAY - 1, len(rows)))
    return rows[rng.permutation(len(rows))], times


@pytest.mark.parametrize("seed", range(6))
def test_the_predicted_rate_stays_quiet_and_four_times_it_does_not(world, seed):
    context, members, population, day = world
    thresholds = evasion.Thresholds.from_calibration(context.calibration)
    book = 30
    rate = evasion.quiet_rate(thresholds, book=book)
    assert rate > 0

    def flagged(n: int) -> set[str]:
        X, times = _attacker(members, population, rate=n, book=book, seed=seed, start=DAY)
        benign = traffic.benign_traffic(population, n_clients=30, seed=100 + seed, start=DAY, duration=DAY)
        features = np.concatenate([benign.features, X])
        clients = np.concatenate([benign.client_ids, np.full(len(X), "attacker")])
        stamps = np.concatenate([benign.timestamps, times])
        order = np.argsort(stamps, kind="stable")
        batch = detectors.QueryBatch(query_ids=np.arange(len(order)), client_ids=clients[order],
                                     timestamps=stamps[order], features=features[order],
                                     outputs=np.random.default_rng(seed).dirichlet([1, 1], len(order)))
        findings, _ = detectors.scan(batch, context)
        return {f.detector for f in findings if f.client_id == "attacker"}

    assert not ({"training_proximity", "volume"} & flagged(rate))
    assert "training_proximity" in flagged(4 * rate)


def test_the_best_day_shares_the_budget_between_cover_and_candidates(world):
    context, *_ = world
    thresholds = evasion.Thresholds.from_calibration(context.calibration)
    volume = evasion.volume_per_day(thresholds)
    assert volume is not None and volume > 0
    benign_book = 40
    best = evasion.best_rate(thresholds, benign_book=benign_book)
    # At least what any of the books it tries gives on its own, and never past the volume test's day.
    for factor in evasion.COVER_FACTORS:
        book = round(factor * benign_book)
        assert best.records >= evasion.quiet_rate(thresholds, book=book, cap=max(0, volume - book))
    assert best.records + best.book <= volume
    # Under a throttle of a day's queries, cover and candidates share it: a brute force over every book agrees
    # within the books the search tries, and nothing passes the allowance.
    for per_day in (10, 60, 150):
        throttled = evasion.best_rate(thresholds, benign_book=benign_book, per_day=per_day)
        brute = max(evasion.quiet_rate(thresholds, book=book, cap=per_day - book) for book in range(per_day))
        assert throttled.records + throttled.book <= per_day
        assert 0.8 * brute <= throttled.records <= brute


def test_the_throttle_for_a_target_is_the_loosest_that_keeps_it(world):
    context, *_ = world
    thresholds = evasion.Thresholds.from_calibration(context.calibration)
    upper = evasion.volume_per_day(thresholds)
    previous = 0
    for target in (1, 3, 8, 20):
        per_day = evasion.throttle_for(thresholds, target, benign_book=40, upper=upper)
        assert target <= per_day <= upper and per_day >= previous
        assert evasion.best_rate(thresholds, benign_book=40, per_day=per_day).records <= target
        if per_day < upper:  # within 2 % looser, an allowance lets the best attacker pass the target
            looser = range(per_day + 1, per_day + max(1, per_day // 50) + 2)
            assert any(evasion.best_rate(thresholds, benign_book=40, per_day=x).records > target for x in looser)
        previous = per_day
    # A target the detectors already keep within the volume test's day needs nothing tighter than that day.
    enough = evasion.best_rate(thresholds, benign_book=40, per_day=upper).records
    assert evasion.throttle_for(thresholds, enough, benign_book=40, upper=upper) == upper
