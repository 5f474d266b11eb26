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
