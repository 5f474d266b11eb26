"""The registry knows every detector; scanning before calibration says what is missing."""

from __future__ import annotations

import pytest

from monitor.detection.detectors import (
    ModelContext,
    NotCalibrated,
    build_detectors,
    detector_names,
    get_detector,
    scan,
)

EXPECTED = {
    "volume",
    "near_duplicate_sweep",
    "boundary_probing",
    "training_proximity",
    "distribution_shift",
    "account_linking",
}


def test_every_detector_is_registered_under_its_name():
    assert set(detector_names()) == EXPECTED
    assert [d.name for d in build_detectors()] == detector_names()


def test_settings_reach_the_detector_and_unknown_names_are_refused():
    assert get_detector("volume", window_seconds=60.0).window_seconds == 60.0
    with pytest.raises(KeyError):
        get_detector("telepathy")
    with pytest.raises(KeyError):
        build_detectors({"telepathy": {}})


def test_scanning_an_uncalibrated_model_raises(attack_scan, context):
    bare = ModelContext(
        feature_means=context.feature_means,
        feature_stds=context.feature_stds,
        n_classes=2,
        fingerprint_key=context.fingerprint_key,
    )
    with pytest.raises(NotCalibrated, match="calibrate"):
        scan(attack_scan.batch, bare)


def test_a_detector_with_other_settings_refuses_the_old_calibration(attack_scan, context):
    with pytest.raises(NotCalibrated, match="settings changed"):
        scan(attack_scan.batch, context, detectors=[get_detector("volume", window_seconds=60.0)])
