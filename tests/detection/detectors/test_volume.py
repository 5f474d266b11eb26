"""Volume: bursts far above the population of clients and the client's own baseline."""

from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors import VolumeDetector, scan
from monitor.detection.detectors.base import SECONDS_PER_DAY
from monitor.detection.detectors.significance import CountTail


def test_flags_scripted_clients_sending_hundreds_of_queries_in_minutes(attack_scan):
    flagged = attack_scan.flagged("volume")
    assert {"attacker-noise", "attacker-augment", "attacker-boundary"} <= flagged
    finding = attack_scan.finding("volume", "attacker-noise")
    assert finding.evidence["peak_window_count"] >= finding.evidence["population_threshold"]
    own_ids = set(attack_scan.batch.query_ids[attack_scan.traffic.of_client("attacker-noise")].tolist())
    assert set(finding.evidence["query_ids"]) <= own_ids


def test_volume_alone_is_never_critical(attack_scan):
    severities = {f.severity for f in attack_scan.findings if f.detector == "volume"}
    assert severities and severities <= {"info", "warning"}


def test_stays_quiet_on_benign_traffic(benign_at_default_rate, benign_at_five_percent):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["volume"]) <= run.allowed()


def burst(adult, context, *, size: int, start: float):
    """One new client sending `size` queries inside a single window, at one query a second."""
    return traffic.candidate_testing(
        adult.members,
        adult.test_pool,
        n_candidates=size,
        member_share=0.0,
        client_id="bursty",
        seed=5,
        start=start,
        rate_per_second=1.0,
    )


def test_a_window_cut_by_two_scans_is_counted_whole(adult, context):
    detector = VolumeDetector()
    calibration = context.calibration["volume"]
    windows_per_day = SECONDS_PER_DAY / calibration["window_seconds"]
    threshold = CountTail.from_dict(calibration["tail"]).threshold(
        calibration["false_alarm_rate"] / windows_per_day
    )
    window = 40 * calibration["window_seconds"]
    queries = burst(adult, context, size=threshold + 4, start=window + 1)
    assert queries.timestamps.max() < window + calibration["window_seconds"]
    first, second = np.arange(len(queries)) < len(queries) // 2, np.arange(len(queries)) >= len(queries) // 2
    assert first.sum() < threshold and second.sum() < threshold

    found_first, state = detector.scan(adult.answer(queries.take(first)), context, None)
    found_second, _ = detector.scan(adult.answer(queries.take(second), first_id=10_000), context, state)
    found_alone, _ = detector.scan(adult.answer(queries.take(second), first_id=10_000), context, None)

    assert found_first == [] and found_alone == []
    assert [f.client_id for f in found_second] == ["bursty"]
    assert found_second[0].evidence["peak_window_count"] == len(queries)


def test_a_steady_heavy_client_is_judged_against_its_own_baseline(adult, context):
    """The same burst that flags a newcomer is ordinary for a client that always sends that much."""
    window_seconds = context.calibration["volume"]["window_seconds"]
    per_window = 60
    days = [
        traffic.candidate_testing(
            adult.members,
            adult.test_pool,
            n_candidates=per_window,
            member_share=0.0,
            client_id="batch-job",
            seed=s,
            start=s * window_seconds + 1,
            rate_per_second=1.0,
        )
        for s in range(12)
    ]
    state = None
    findings_per_scan = []
    for number, part in enumerate(days):
        findings, state = scan(
            adult.answer(part, first_id=number * 1000), context, state, detectors=[VolumeDetector()]
        )
        findings_per_scan.append([f.client_id for f in findings])
    assert findings_per_scan[0] == ["batch-job"]  # a newcomer at 60 per window stands out
    assert findings_per_scan[-1] == []  # twelve windows later it is the client's normal
