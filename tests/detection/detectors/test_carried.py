"""The carried test's parts (detectors/carried.py): the distinct-unit sketch, the epoch, rho's upper bound."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detection.detectors import carried
from monitor.detection.detectors.significance import fit_base_rate, rho_upper_bound

DAY = 86_400.0


def keyed_units(n: int, seed: int) -> np.ndarray:
    """n distinct unit keys as the keyed fingerprints give them (52-bit)."""
    rng = np.random.default_rng(seed)
    return np.unique(rng.integers(0, 1 << 52, size=2 * n, dtype=np.int64))[:n]


def test_the_sketch_counts_exactly_below_its_size_and_repeats_count_once():
    keys = keyed_units(carried.SKETCH_SIZE - 1, seed=0)
    history = carried.update(None, carried.unit_hashes(keys), np.zeros(0, np.int64), first=0.0, last=10.0)
    history = carried.update(history.to_entry(), carried.unit_hashes(keys[:50]), np.zeros(0, np.int64),
                             first=DAY, last=DAY + 10)
    assert history.units == carried.SKETCH_SIZE - 1 and not history.saturated


@pytest.mark.parametrize("n", [1_000, 20_000])
def test_the_sketch_estimate_is_within_its_stated_error_over_many_keys(n):
    errors = []
    for seed in range(40):  # each seed stands for another fingerprint key: other hashes of other units
        keys = keyed_units(n, seed=seed)
        history = carried.History.empty(0.0)
        for part in np.array_split(keys, 7):  # a day at a time, through the stored form
            history = carried.History.from_entry(history.add(carried.unit_hashes(part), np.zeros(0, np.int64),
                                                             first=0.0, last=1.0).to_entry())
        errors.append(history.units / n - 1)
    stated = 1 / np.sqrt(carried.SKETCH_SIZE - 2)
    assert abs(np.mean(errors)) < 2 * stated / np.sqrt(len(errors)) + 0.01
    assert 0.5 * stated < np.std(errors) < 1.5 * stated
    assert max(abs(e) for e in errors) < 4 * stated


def test_an_epoch_closes_after_the_horizon_and_a_new_one_opens():
    keys = keyed_units(100, seed=1)
    history = carried.update(None, carried.unit_hashes(keys), np.asarray([3, 5]), first=0.0, last=DAY)
    assert history.units == 100 and history.hits.tolist() == [3, 5] and history.days == 1
    later = carried.update(history.to_entry(), carried.unit_hashes(keys[:10]), np.asarray([7]),
                           first=carried.HORIZON_SECONDS + DAY, last=carried.HORIZON_SECONDS + 2 * DAY)
    assert later.since == carried.HORIZON_SECONDS + DAY and later.units == 10 and later.hits.tolist() == [7]
    kept = carried.prune({"open": later.to_entry(), "over": history.to_entry()}, now=later.last)
    assert list(kept) == ["open"]


def test_hits_past_the_cap_are_a_lower_bound():
    history = carried.update(None, carried.unit_hashes(keyed_units(10, seed=2)),
                             np.arange(carried.MAX_HITS + 500), first=0.0, last=1.0)
    assert len(history.hits) == carried.MAX_HITS
    more = history.add(np.zeros(0, np.uint32), np.asarray([carried.MAX_HITS + 10_000]), first=2.0, last=3.0)
    assert len(more.hits) == carried.MAX_HITS


def test_the_tail_widens_once_the_sketch_estimates():
    exact = carried.carried_tail(40, carried.SKETCH_SIZE - 1, 0.1, 0.0)
    plain = carried.binomial_tail(np.asarray(60.0), np.asarray(400.0), 0.1)
    estimated = carried.carried_tail(60, 400, 0.1, 0.0)
    assert exact == pytest.approx(carried.binomial_tail(np.asarray(40.0), np.asarray(carried.SKETCH_SIZE - 1.0), 0.1))
    assert estimated > plain  # the sketch's error makes the same excess less significant


def test_rho_upper_bound_covers_the_true_rho_and_narrows_with_more_clients():
    rng = np.random.default_rng(3)
    covered, widths = 0, {}
    for clients in (100, 2_000):
        for _trial in range(50):
            true_rho, p = 0.002, 0.07
            # Beta-binomial clients with intra-client correlation true_rho: p_i ~ Beta(a, b), rho = 1 / (a + b + 1).
            total = 1 / true_rho - 1
            rates = rng.beta(p * total, (1 - p) * total, size=clients)
            n = rng.integers(30, 300, size=clients)
            x = rng.binomial(n, rates)
            base, rho = fit_base_rate(x, n)
            upper = rho_upper_bound(x, n, base, rho)
            assert upper >= rho
            covered += clients == 2_000 and upper >= true_rho
            widths.setdefault(clients, []).append(upper - rho)
    assert covered >= 45  # about 97.7 % one-sided at two standard errors
    assert np.mean(widths[2_000]) < np.mean(widths[100]) / 3


def test_rho_upper_bound_of_too_few_clients_is_the_largest_rho():
    assert rho_upper_bound(np.asarray([1.0]), np.asarray([30.0]), 0.05, 0.0) == 0.5
