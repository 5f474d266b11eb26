"""The carried test on traffic: an attacker that keeps every block quiet is found within its epoch, while honest
clients scanned day after day for a week, with their state carried, stay within the false-alarm budget."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.demo import traffic
from monitor.detection.detectors import (
    BoundaryProbingDetector,
    TrainingProximityDetector,
    calibrate,
    scan,
)
from monitor.detection.detectors.carried import HORIZON_SECONDS
from monitor.detection.detectors.client_blocks import carried_led
from monitor.detection.detectors.evasion import Thresholds, quiet_rate

DAY = 86_400.0
WEEK = round(HORIZON_SECONDS / DAY)
SMALL_BOOK = 40  # the attacker's cover records a day, fresh every day
SHARE_DETECTORS = (TrainingProximityDetector(), BoundaryProbingDetector())


def patient_attacker(adult, *, rate: int, seed: int, book: int, days: int = WEEK) -> traffic.Traffic:
    """Every day `rate` candidate records (half members, one query each) and a fresh book of `book` population
    records, spread over the day: the attacker of detectors/evasion.py."""
    rng = np.random.default_rng(seed)
    members = rng.choice(len(adult.members), rate * days // 2 + 1, replace=False)
    outsiders = rng.choice(len(adult.test_pool), rate * days + book * days, replace=False)
    parts = []
    for day in range(days):
        n_members = rate // 2 + (day % 2 if rate % 2 else 0)
        candidates = np.vstack([adult.members[members[day * (rate // 2):day * (rate // 2) + n_members]],
                                adult.test_pool[outsiders[day * rate:day * rate + rate - n_members]]])
        cover = adult.test_pool[outsiders[days * rate + day * book:days * rate + (day + 1) * book]]
        features = np.vstack([candidates, cover]).astype(np.float32)
        origins = np.r_[adult.member_ids[members[day * (rate // 2):day * (rate // 2) + n_members]],
                        np.full(len(features) - n_members, -1)]
        parts.append(traffic.Traffic(
            features=features, client_ids=np.full(len(features), "patient"),
            timestamps=np.sort(day * DAY + rng.uniform(0, DAY, len(features))), origin_ids=origins.astype(np.int64),
            attackers={"patient": "candidate_testing"}))
    return traffic.combine(*parts)


def run_week(adult, context, day_traffic: traffic.Traffic, *, days: int = WEEK):
    """Scan a day at a time with the state carried; {day: findings}."""
    state, found = None, {}
    for day in range(days):
        batch = adult.answer(day_traffic.take((day_traffic.timestamps >= day * DAY) &
                                              (day_traffic.timestamps < (day + 1) * DAY)), first_id=day * 10**6)
        findings, state = scan(batch, context, state, detectors=SHARE_DETECTORS)
        found[day] = findings
    return found


@pytest.fixture(scope="module")
def share_context(adult, reference_batch):
    context = adult.context(reference_batch)
    context.calibration = calibrate(reference_batch, context, detectors=SHARE_DETECTORS)
    return context


def test_the_calibration_states_the_carried_test(share_context):
    proximity = share_context.calibration["training_proximity"]
    assert proximity["rho_upper"] > proximity["rho"] and proximity["horizon_seconds"] == HORIZON_SECONDS


def without_carried(calibration):
    """The calibration as one made before the carried test: the block tests alone, with the whole budget."""
    return {name: {key: value for key, value in entry.items() if key != "rho_upper"}
            for name, entry in calibration.items()}


def patient_days(found) -> list[int]:
    return [day for day, findings in found.items()
            if any(f.client_id == "patient" and f.detector == "training_proximity" for f in findings)]


@pytest.mark.parametrize("seed", range(8))
def test_an_attacker_whose_blocks_stay_under_the_threshold_is_found_by_its_week(adult, reference_batch, seed):
    # Each seed is another fingerprint key (other regions, another sketch) and another attacker. The attacker sends
    # twice what the block tests alone let through with the attacker's margin: their day-by-day findings come and go
    # with the draw, while the carried evidence only grows.
    context = adult.context(reference_batch, fingerprint_key=f"carried-{seed}".encode() * 4)
    context.calibration = calibrate(reference_batch, context, detectors=SHARE_DETECTORS)
    proximity = Thresholds.from_calibration(context.calibration).proximity
    blocks_alone = Thresholds(window_count=None, windows_per_day=144.0, proximity=proximity, boundary=None,
                              sweep_records=None).without_carried()
    rate = 2 * quiet_rate(blocks_alone, book=SMALL_BOOK)
    attacker = patient_attacker(adult, rate=rate, seed=seed, book=SMALL_BOOK)
    found = run_week(adult, context, attacker)
    assert WEEK - 1 in patient_days(found), f"a patient attacker at {rate} records a day was not found on day {WEEK}"
    last = next(f for f in found[WEEK - 1] if f.client_id == "patient" and f.detector == "training_proximity")
    assert carried_led(last.evidence) and last.evidence["carried_p_value"] < 1e-6
    assert last.evidence["carried_days"] > WEEK - 1.5
    assert "days queried" in TrainingProximityDetector().describe(last.evidence)

    context.calibration = without_carried(context.calibration)
    alone = run_week(adult, context, attacker)
    assert len(patient_days(alone)) <= len(patient_days(found))
    assert all("carried_p_value" not in f.evidence for findings in alone.values() for f in findings)


@pytest.mark.parametrize("books", [(20, 400), (300, 3000)])
def test_honest_clients_over_a_week_stay_within_the_budget(adult, books):
    """Re-scoring the same customers (the default books) and meeting new ones all week (large books): the carried
    sketch counts a re-sent customer once, and rho's upper bound covers clients' own rates."""
    reference = adult.answer(traffic.benign_traffic(adult.reference_pool, n_clients=400, seed=21, book_size=books,
                                                    queries_per_day=100))
    context = adult.context(reference)
    context.calibration = calibrate(reference, context, detectors=SHARE_DETECTORS)
    honest = traffic.benign_traffic(adult.test_pool, n_clients=400, seed=22, duration=WEEK * DAY, book_size=books,
                                    queries_per_day=100)
    found = run_week(adult, context, honest)
    flagged = {(f.detector, f.client_id) for findings in found.values() for f in findings}
    client_days = 400 * WEEK
    allowed = 2 * 1e-3 * client_days + 3
    assert len(flagged) <= allowed, sorted(flagged)
