"""The pieces of a calibration on a window that may hold attackers (`detectors/trimming.py`), without Django: the
halves each client is judged across, the bar for leaving a client out, matches remembered across batches, and share
base rates that one busy client cannot set alone."""
from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors import Finding, QueryBatch
from monitor.detection.detectors.base import PreparedBatch
from monitor.detection.detectors.client_blocks import calibrate_share
from monitor.detection.detectors.trimming import first_half, is_blatant, trimmed_calibration
from tests.detection.detectors.conftest import Adult


def test_the_halves_hold_as_many_clients_and_a_clients_half_does_not_depend_on_the_batch():
    clients = np.asarray([f"client-{i:04d}" for i in range(101)])
    half = first_half(np.repeat(clients, 3))
    assert abs(int(half.sum()) // 3 - 101 // 2) <= 1 and (half[::3] == half[1::3]).all()
    shuffled = np.random.default_rng(0).permutation(np.repeat(clients, 3))
    mine = dict(zip(shuffled.tolist(), first_half(shuffled).tolist(), strict=True))
    assert mine == dict(zip(clients.tolist(), half[::3].tolist(), strict=True))


def finding(score: float, *, severity: str = "warning", rate: float | None = 1e-3) -> Finding:
    evidence = {} if rate is None else {"false_alarm_rate": rate}
    return Finding(detector="volume", client_id="c", score=score, severity=severity, evidence=evidence)


def test_only_a_finding_at_twice_its_threshold_leaves_a_client_out():
    assert not is_blatant(finding(5.9)) and is_blatant(finding(6.0))  # -log10(1e-3) = 3, twice it 6
    assert is_blatant(finding(6.0, severity="warning"))  # volume says warning where the score is critical
    assert is_blatant(finding(9.0, severity="critical", rate=None)) and not is_blatant(finding(9.0, rate=None))


def test_matches_remembered_across_batches_are_the_matches_themselves(adult: Adult, reference_batch: QueryBatch):
    direct = adult.context(reference_batch)
    remembering = adult.context(reference_batch)
    halves = reference_batch.take(np.arange(len(reference_batch)) % 2 == 0), reference_batch
    with remembering.remembering_matches():
        for batch in halves:  # the second batch holds the first's rows again, and others
            remembered = PreparedBatch(batch, remembering).member_matches(0.5)
            expected = PreparedBatch(batch, direct).member_matches(0.5)
            assert remembered is not None and expected is not None
            assert all(np.array_equal(a, b) for a, b in zip(remembered, expected, strict=True))
    assert "remembered_matches" not in remembering._cache  # nothing kept past the calibration


def test_one_busy_client_does_not_set_a_share_tests_base_rate(adult: Adult, reference_batch: QueryBatch):
    """Sixty light clients and one with a full block of 40 distinct records and no hit: the base rate is the
    window's, not that one client's."""
    rng = np.random.default_rng(1)
    light = traffic.benign_traffic(adult.reference_pool, n_clients=60, seed=3, duration=3 * 3600.0,
                                   queries_per_day=80.0, rate_spread=0.0)
    busy = adult.reference_pool[rng.choice(len(adult.reference_pool), 40, replace=False)]
    features = np.vstack([light.features, busy]).astype(np.float32)
    clients = np.concatenate([light.client_ids, np.full(40, "busy")])
    batch = QueryBatch(query_ids=np.arange(len(features)), client_ids=clients,
                       timestamps=np.linspace(0, 3 * 3600.0, len(features)), features=features,
                       outputs=np.full((len(features), 2), 0.5, np.float32))
    prepared = adult.context(batch).prepared(batch)
    hits = np.zeros(len(prepared), bool)
    hits[(prepared.clients[prepared.codes] != "busy") & (np.arange(len(prepared)) % 10 == 0)] = True
    fitted = calibrate_share(prepared, hits, min_queries=30)
    assert fitted["base_rate"] > 0.05  # the light clients' one in ten, not half a hit in 40 (0.012)


def test_a_window_without_attackers_is_calibrated_whole(adult: Adult, reference_batch: QueryBatch):
    from monitor.detection.detectors import build_detectors

    result = trimmed_calibration(reference_batch, adult.context(reference_batch), build_detectors())
    assert result.trimmed == [] and result.reference is reference_batch
