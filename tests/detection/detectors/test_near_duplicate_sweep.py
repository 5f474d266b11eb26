"""Near-duplicate sweep: many distinct queries close to one point (label-only attacks)."""

from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors import NearDuplicateSweepDetector, scan


def test_flags_noise_and_augmentation_sweeps(attack_scan):
    assert {"attacker-noise", "attacker-augment"} <= attack_scan.flagged("near_duplicate_sweep")
    for client in ("attacker-noise", "attacker-augment"):
        evidence = attack_scan.finding("near_duplicate_sweep", client).evidence
        assert evidence["max_records_near_one_point"] >= evidence["sweep_threshold"]


def test_names_the_member_records_at_the_centre_of_the_sweep(attack_scan):
    swept = attack_scan.traffic.of_client("attacker-noise")
    targets = set(attack_scan.traffic.origin_ids[swept].tolist())
    reported = attack_scan.finding("near_duplicate_sweep", "attacker-noise").member_ids
    assert reported and set(reported) <= targets


def test_stays_quiet_on_benign_traffic(benign_at_default_rate, benign_at_five_percent):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["near_duplicate_sweep"]) <= run.allowed()


def test_sending_the_same_record_again_and_again_is_not_a_sweep(adult, context):
    record = adult.test_pool[:1]
    again = traffic.noise_sweep(
        record, feature_stds=adult.stds, client_id="refresher", seed=3, copies=300, noise_scale=0.0
    )
    findings, _ = scan(adult.answer(again), context, detectors=[NearDuplicateSweepDetector()])
    assert findings == []


def test_a_slow_sweep_is_caught_across_many_small_scans(adult, context):
    slow = traffic.noise_sweep(
        adult.members[100:104],
        feature_stds=adult.stds,
        client_id="patient",
        seed=4,
        copies=30,
        start=3600.0,
        rate_per_second=0.05,
        target_ids=adult.member_ids[100:104],
    )
    minute = np.floor((slow.timestamps - slow.timestamps[0]) / 60).astype(int)
    detector = NearDuplicateSweepDetector()
    state, with_state, without_state = None, set(), set()
    for scan_number in np.unique(minute):
        part = slow.take(minute == scan_number)
        batch = adult.answer(part, first_id=int(scan_number) * 100)
        found, state = scan(batch, context, state, detectors=[detector])
        with_state |= {f.client_id for f in found}
        alone, _ = scan(batch, context, None, detectors=[detector])
        without_state |= {f.client_id for f in alone}
    assert max(np.bincount(minute)) < context.calibration["near_duplicate_sweep"]["min_queries"]
    assert with_state == {"patient"}
    assert without_state == set()
