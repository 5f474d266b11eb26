"""Every registered detector keeps the contract the scanner and the alerts rely on, checked one detector at a time
(scikit-learn's `parametrize_with_checks` is the model; `tests/audits/attacks/test_catalogue.py` does the same for attacks):
its own words for people, a calibration its scan accepts, nothing found in an empty batch, the same findings and
state for the same input, findings the alert lifecycle can use, a state of {section: {client id: entry}} the
scanner can store per client, and no Django. A new detector is held to all of it by registering."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from monitor.alerts import evidence_text
from monitor.demo import traffic
from monitor.detection.detectors import (
    Detector,
    Finding,
    ModelContext,
    NotCalibrated,
    QueryBatch,
    detector_names,
    detector_title,
    get_detector,
    register,
)
from monitor.detection.detectors.base import MAX_SCORE
from monitor.platform.severity import Severity
from tests.detection.detectors.conftest import Adult, Scan

NAMES = detector_names()
SEVERITY_VALUES = {severity.value for severity in Severity}


@dataclass
class Calibrated:
    """One detector, calibrated alone on the shared reference traffic, and a context holding only its calibration."""

    detector: Detector
    calibration: dict[str, Any]
    adult: Adult
    reference: QueryBatch

    def context(self) -> ModelContext:
        """A new context, as a new worker rebuilds it: no caches, the calibration through JSON."""
        context = self.adult.context(self.reference)
        context.calibration = {self.detector.name: json.loads(json.dumps(self.calibration))}
        return context


@pytest.fixture(scope="module", params=NAMES)
def calibrated(request: pytest.FixtureRequest, adult: Adult, reference_batch: QueryBatch) -> Calibrated:
    detector = get_detector(request.param)
    calibration = detector.calibrate(reference_batch, adult.context(reference_batch))
    return Calibrated(detector, calibration, adult, reference_batch)


@pytest.fixture(scope="module")
def benign_batch(adult: Adult) -> QueryBatch:
    """A small benign day: 40 clients who never sent the reference traffic."""
    return adult.answer(traffic.benign_traffic(adult.test_pool, n_clients=40, seed=25, client_prefix="contract-"))


def empty_batch(n_features: int) -> QueryBatch:
    return QueryBatch(query_ids=np.empty(0, np.int64), client_ids=np.empty(0, str), timestamps=np.empty(0),
                      features=np.empty((0, n_features), np.float32), outputs=np.empty((0, 2), np.float32))


def as_dicts(findings: list[Finding]) -> list[dict[str, Any]]:
    return [finding.to_dict() for finding in findings]


def assert_state_shape(state: Any, clients: set[str], name: str) -> None:
    """{section: {client id: entry}}, JSON through and through, and only clients of the batch: the scanner stores
    each client's entries as one row and passes a scan only the rows of its batch's clients (state_rows)."""
    assert isinstance(state, dict), (name, type(state))
    assert json.loads(json.dumps(state)) == state, name
    for section, entries in state.items():
        assert isinstance(section, str) and isinstance(entries, dict), (name, section)
        assert set(entries) <= clients, (name, section, sorted(set(entries) - clients)[:5])


def findings_of(scan: Scan, name: str) -> list[Finding]:
    return [finding for finding in scan.findings if finding.detector == name]


# ---- its words -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_it_has_a_name_and_a_one_line_title_the_incidents_use(name: str) -> None:
    detector = get_detector(name)
    assert detector.name == name and name.isidentifier()
    title = type(detector).title
    assert isinstance(title, str) and title.strip() == title and title, name
    assert "\n" not in title and title != name and len(title) <= 100, title
    assert detector_title(name) == title


@pytest.mark.parametrize("name", NAMES)
def test_it_describes_each_of_its_own_findings_in_one_sentence(name: str, attack_scan: Scan) -> None:
    findings = findings_of(attack_scan, name)
    # The shared attack day has an attacker for every detector: none may stay silent, or this test checks nothing.
    assert findings, f"{name} found nothing in the attack day"
    detector = get_detector(name)
    for finding in findings:
        evidence = {"score": finding.score, **finding.evidence}  # as an incident stores it
        sentence = detector.describe(evidence)
        assert sentence and sentence.endswith(".") and "\n" not in sentence, (name, sentence)
        # A key the sentence reads but the evidence lacks shows as "None": the two must agree.
        assert "None" not in sentence, (name, sentence)
        assert evidence_text.describe(name, evidence) == sentence  # what email, Slack and the pages show


# ---- calibration and scanning ------------------------------------------------------------------------------------


def test_its_calibration_is_json_records_its_settings_and_is_what_its_scan_accepts(
        calibrated: Calibrated, benign_batch: QueryBatch) -> None:
    detector, calibration = calibrated.detector, calibrated.calibration
    assert isinstance(calibration, dict) and json.loads(json.dumps(calibration)) == calibration
    assert calibration.get("settings") == detector.settings()
    findings, state = detector.scan(benign_batch, calibrated.context())
    assert isinstance(findings, list)
    assert_state_shape(state, set(benign_batch.client_ids.tolist()), detector.name)
    # The same reference gives the same calibration: a recalibration on the same window changes nothing.
    assert detector.calibrate(calibrated.reference, calibrated.adult.context(calibrated.reference)) == calibration


def test_it_refuses_to_scan_without_its_calibration(calibrated: Calibrated, benign_batch: QueryBatch) -> None:
    bare = calibrated.adult.context(calibrated.reference)
    with pytest.raises(NotCalibrated, match=calibrated.detector.name):
        calibrated.detector.scan(benign_batch, bare)


def test_an_empty_batch_finds_nothing_and_keeps_a_state_of_the_documented_shape(
        calibrated: Calibrated, benign_batch: QueryBatch) -> None:
    detector, context = calibrated.detector, calibrated.context()
    empty = empty_batch(benign_batch.features.shape[1])
    findings, state = detector.scan(empty, context)
    assert findings == []
    assert_state_shape(state, set(), detector.name)
    _, carried = detector.scan(benign_batch, context)
    findings, state = detector.scan(empty, context, carried)
    assert findings == []
    assert_state_shape(state, set(benign_batch.client_ids.tolist()), detector.name)


def test_the_same_input_gives_the_same_findings_and_state(calibrated: Calibrated, attack_scan: Scan,
                                                          benign_batch: QueryBatch) -> None:
    detector = calibrated.detector
    alone, alone_state = detector.scan(attack_scan.batch, calibrated.context())
    # The shared scan ran every detector in one context: alone, in a new context, this one finds the same.
    assert alone and as_dicts(alone) == as_dicts(findings_of(attack_scan, detector.name))
    assert json.dumps(alone_state, sort_keys=True) == json.dumps(attack_scan.state[detector.name], sort_keys=True)
    # And in a context that has scanned another batch since: nothing of that batch may leak into this scan.
    reused = calibrated.context()
    detector.scan(benign_batch, reused)
    again, again_state = detector.scan(attack_scan.batch, reused)
    assert as_dicts(again) == as_dicts(alone) and again_state == alone_state


def test_its_findings_are_ones_the_alerts_can_use(calibrated: Calibrated, attack_scan: Scan) -> None:
    name = calibrated.detector.name
    findings, state = findings_of(attack_scan, name), attack_scan.state[name]
    clients = set(attack_scan.batch.client_ids.tolist())
    assert findings, f"{name} found nothing in the attack day"
    for finding in findings:
        assert isinstance(finding.client_id, str) and finding.client_id in clients, finding.client_id
        assert finding.severity in SEVERITY_VALUES, finding.severity
        assert isinstance(finding.score, float) and 0.0 <= finding.score <= MAX_SCORE, finding.score
        p_values = {key: value for key, value in finding.evidence.items() if key.endswith("p_value")}
        for key, value in p_values.items():
            assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0), (name, key, value)
        json.dumps(finding.evidence, allow_nan=False)  # stored as JSON on the finding and the alert
    assert len({finding.client_id for finding in findings}) == len(findings), "one finding per client per scan"
    assert_state_shape(state, clients, name)


# ---- purity --------------------------------------------------------------------------------------------------------


PURE_SCRIPT = """
import sys
sys.modules["django"] = None  # any `import django...` now raises ImportError
import importlib
module = importlib.import_module({module!r})
from monitor.detection.detectors import get_detector
detector = get_detector({name!r})
assert type(detector).__module__ == module.__name__
assert not any(n == "django" or n.startswith("django.") for n, m in sys.modules.items() if m)
print("ok")
"""


@pytest.mark.parametrize("name", NAMES)
def test_its_module_imports_no_django(name: str) -> None:
    module = type(get_detector(name)).__module__
    result = subprocess.run([sys.executable, "-c", PURE_SCRIPT.format(module=module, name=name)],
                            cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---- the registry holds every detector to it ---------------------------------------------------------------------


def test_a_detector_without_its_title_is_refused() -> None:
    @dataclass(frozen=True)
    class Untitled(Detector):
        name: ClassVar[str] = "untitled"

        def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
            return {"settings": self.settings()}

        def scan(self, batch: QueryBatch, context: ModelContext,
                 state: Any = None) -> tuple[list[Finding], dict[str, Any]]:
            return [], {}

        def describe(self, evidence: Any) -> str:
            return "Did something."

    with pytest.raises(TypeError, match="title"):
        register(Untitled)
    assert detector_names() == NAMES


def test_a_stored_finding_of_a_detector_no_longer_registered_keeps_its_name_and_lines() -> None:
    # Old alerts keep the kind they were raised under; a renamed or removed detector must not break their pages.
    assert detector_title("retired_detector") == "retired_detector"
    assert evidence_text.describe("retired_detector", {"n_queries": 3}) == ""
    assert evidence_text.evidence_lines({"n_queries": 3}, kind="retired_detector") == ["n_queries: 3"]
