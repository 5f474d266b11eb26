"""Boundary probing: queries piling up where the model hesitates (HopSkipJump-style attacks)."""

from __future__ import annotations

from monitor.demo import traffic
from monitor.detection.detectors import BoundaryProbingDetector, calibrate, scan
from monitor.platform.output_policy import OutputPolicy


def test_flags_a_boundary_search(attack_scan):
    assert "attacker-boundary" in attack_scan.flagged("boundary_probing")
    evidence = attack_scan.finding("boundary_probing", "attacker-boundary").evidence
    assert evidence["share_near_boundary"] > evidence["base_rate"]
    own_ids = set(attack_scan.batch.query_ids[attack_scan.traffic.of_client("attacker-boundary")].tolist())
    assert evidence["query_ids"] and set(evidence["query_ids"]) <= own_ids


def test_stays_quiet_on_benign_traffic(benign_at_default_rate, benign_at_five_percent):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["boundary_probing"]) <= run.allowed()


def test_stands_down_when_clients_only_see_labels(adult, reference_batch):
    label_only = OutputPolicy.parse("label")

    def labels(x):
        return label_only.apply(adult.model.predict_proba(x))

    reference = adult.answer(
        traffic.benign_traffic(adult.reference_pool, n_clients=50, seed=1), outputs=labels
    )
    context = adult.context(reference_batch)
    detector = BoundaryProbingDetector()
    context.calibration = calibrate(reference, context, detectors=[detector])
    assert context.calibration["boundary_probing"]["applicable"] is False
    probe = traffic.boundary_search(
        adult.model.predict_proba,
        adult.test_pool[:20],
        adult.test_pool,
        feature_stds=adult.stds,
        client_id="prober",
        seed=2,
    )
    findings, state = scan(adult.answer(probe, outputs=labels), context, detectors=[detector])
    assert findings == [] and state == {"boundary_probing": {}}
