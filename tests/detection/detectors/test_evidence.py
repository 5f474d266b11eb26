"""Findings carry counts and ids, never feature values; calibration never holds member records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor.demo import traffic
from monitor.detection.detectors import SEVERITIES, calibrate, scan

from .conftest import Adult, attacks


def numbers(value) -> list[float]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list | tuple):
        return [n for item in value for n in numbers(item)]
    raise AssertionError(f"unexpected type in evidence: {type(value)}")


class Shifted:
    """The target model on features moved by `offsets`: every feature value becomes a distinctive
    non-integer, so a member value found in evidence cannot be a coincidence with a count."""

    def __init__(self, model, offsets: np.ndarray) -> None:
        self.model, self.offsets = model, offsets

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(x, dtype=np.float64) - self.offsets)


def member_values(adult) -> set[float]:
    """Raw member values and the standardised coordinates the detectors work with, exactly."""
    raw = adult.members.astype(np.float32).astype(np.float64)
    scaled = (
        ((adult.members - adult.members.mean(0)) / adult.members.std(0)).astype(np.float32).astype(np.float64)
    )
    return set(raw.reshape(-1).tolist()) | set(scaled.reshape(-1).tolist())


@pytest.fixture(scope="module")
def shifted(adult):
    offsets = 0.123456789 * np.arange(1, adult.members.shape[1] + 1) + np.pi
    return Adult(
        members=adult.members + offsets,
        member_ids=adult.member_ids,
        reference_pool=adult.reference_pool + offsets,
        test_pool=adult.test_pool + offsets,
        stds=adult.stds,
        model=Shifted(adult.model, offsets),
    )


@pytest.fixture(scope="module")
def scan_with_named_records(shifted):
    """Member ids are strings and query ids start at a billion: no id can pass for a feature value."""
    reference = shifted.answer(traffic.benign_traffic(shifted.reference_pool, n_clients=200, seed=1))
    member_ids = np.asarray([f"rec-{i}" for i in shifted.member_ids])
    context = shifted.context(reference, member_ids=member_ids)
    context.calibration = calibrate(reference, context)
    day = traffic.combine(traffic.benign_traffic(shifted.test_pool, n_clients=100, seed=7), *attacks(shifted))
    batch = shifted.answer(day, first_id=10**9)
    findings, _ = scan(batch, context)
    return context, batch, findings, set(member_ids.tolist())


def test_evidence_holds_no_member_feature_values(shifted, scan_with_named_records):
    context, _, findings, _ = scan_with_named_records
    betraying = member_values(shifted)
    assert {f.detector for f in findings if f.member_ids}  # the attacks did touch members
    for finding in findings:
        found = set(numbers(finding.evidence)) & betraying
        assert not found, f"{finding.detector} evidence holds member values {sorted(found)[:5]}"
        for value in finding.evidence.values():
            # No feature vector in any form: no list of floats as long as a row.
            if isinstance(value, list) and len(value) == context.n_features:
                assert not all(isinstance(item, float) for item in value)


def test_evidence_ids_are_ids_of_this_batch_and_of_members(scan_with_named_records):
    _, batch, findings, member_ids = scan_with_named_records
    query_ids = set(batch.query_ids.tolist())
    for finding in findings:
        assert set(finding.evidence.get("query_ids", [])) <= query_ids
        assert set(finding.member_ids) <= member_ids


def test_findings_state_their_false_alarm_rate_and_clear_it(scan_with_named_records):
    context, _, findings, _ = scan_with_named_records
    for finding in findings:
        rate = context.calibration[finding.detector]["false_alarm_rate"]
        assert finding.evidence["false_alarm_rate"] == rate
        assert finding.score >= -math.log10(rate) - 1e-6
        assert finding.severity in SEVERITIES
        json.dumps(finding.to_dict())


def test_calibration_is_json_and_holds_no_member_values(shifted, scan_with_named_records):
    context, _, _, _ = scan_with_named_records
    text = json.dumps(context.calibration)
    assert "rec-" not in text
    assert not set(numbers(json.loads(text))) & member_values(shifted)
