"""Training proximity: queries landing on member records far more often than benign traffic does."""

from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors import TrainingProximityDetector, calibrate, scan


def test_flags_an_attacker_testing_candidate_records(attack_scan):
    assert "attacker-candidates" in attack_scan.flagged("training_proximity")
    evidence = attack_scan.finding("training_proximity", "attacker-candidates").evidence
    assert evidence["members_hit_per_region"] > evidence["base_rate"]


def test_names_the_members_the_attacker_sent(attack_scan):
    sent = attack_scan.traffic.origin_ids[attack_scan.traffic.of_client("attacker-candidates")]
    finding = attack_scan.finding("training_proximity", "attacker-candidates")
    reported = set(finding.member_ids)
    # A non-member candidate may land on a member too, as often as benign queries do.
    stray = reported - set(sent[sent >= 0].tolist())
    assert reported
    assert len(stray) <= 2 * finding.evidence["base_rate"] * len(reported) + 1


def test_stays_quiet_on_benign_traffic(benign_at_default_rate, benign_at_five_percent):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["training_proximity"]) <= run.allowed()


def test_candidates_that_are_all_non_members_are_not_flagged(adult, context):
    outsiders = traffic.candidate_testing(
        adult.members, adult.test_pool, n_candidates=300, member_share=0.0, client_id="outsider", seed=8
    )
    assert (outsiders.origin_ids == -1).all()
    findings, _ = scan(adult.answer(outsiders), context, detectors=[TrainingProximityDetector()])
    assert findings == []


def test_without_member_records_the_detector_stands_down(adult, reference_batch):
    context = adult.context(reference_batch, members=None, member_ids=None)
    context.calibration = calibrate(reference_batch, context, detectors=[TrainingProximityDetector()])
    assert context.calibration["training_proximity"]["applicable"] is False
    candidates = traffic.candidate_testing(
        adult.members,
        adult.test_pool,
        n_candidates=100,
        client_id="c",
        seed=1,
        member_ids=np.arange(len(adult.members)),
    )
    findings, _ = scan(adult.answer(candidates), context, detectors=[TrainingProximityDetector()])
    assert findings == []
