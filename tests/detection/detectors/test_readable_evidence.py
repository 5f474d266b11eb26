"""Evidence a person can read: for every finding of every detector on real attack traffic, a sentence saying what
the client did with the evidence's own numbers, times as UTC times, p-values as odds for a benign client."""
from __future__ import annotations

import re

from monitor.alerts.evidence_text import describe, evidence_lines, odds, without_member_ids
from monitor.detection.detectors.wording import as_time

EPOCH_FLOAT = re.compile(r"\b1[5-9]\d{8}(\.\d+)?\b")  # seconds since 1970 left as a number


def test_every_detector_finding_reads_as_a_sentence_with_its_numbers(attack_scan):
    kinds = set()
    for finding in attack_scan.findings:
        evidence = {"score": finding.score, **finding.evidence}
        sentence = describe(finding.detector, evidence)
        assert sentence and sentence.endswith("."), (finding.detector, evidence)
        lines = evidence_lines(evidence, limit=40, kind=finding.detector, member_ids=True)
        assert lines[0] == sentence
        # For the roles that may not see member ids, the same sentence is told from the counts alone.
        counted = evidence_lines(evidence, limit=40, kind=finding.detector)
        assert counted[0] == describe(finding.detector, without_member_ids(evidence))
        assert counted[0].endswith(".") and "member ids" not in counted[0], counted[0]
        assert not EPOCH_FLOAT.search("\n".join(lines)), lines
        p_lines = [line for line in lines if line.startswith("p_value: ")]
        assert all("for a benign client" in line for line in p_lines), p_lines
        kinds.add(finding.detector)
    assert kinds >= {"volume", "near_duplicate_sweep", "training_proximity", "boundary_probing"}, kinds


def test_the_volume_sentence_names_the_burst_its_time_and_how_far_above_the_client_it_is():
    evidence = {"n_queries": 400, "peak_window_count": 300, "peak_window_start": 1796110800.0, "window_seconds": 600.0,
                "population_threshold": 40, "baseline_mean_per_window": 11.1, "p_value": 8.26e-180,
                "false_alarm_rate": 0.001}
    assert describe("volume", evidence) == ("Sent 300 queries in 10 minutes from 2026-12-01 07:40 UTC, 27× its own "
                                            "usual 11.1 per window; benign clients stay under 40.")
    lines = evidence_lines(evidence, kind="volume")
    assert "peak_window_start: 2026-12-01 07:40 UTC" in lines
    assert "p_value: about 1 in 10^179 for a benign client" in lines
    assert "false_alarm_rate: 1 in 1,000 benign client-days" in lines


def test_odds_and_times_read_naturally_and_leave_odd_values_alone():
    assert odds(0.0004) == "about 1 in 2,500 for a benign client"
    assert odds(1e-300) == "about 1 in 10^300 for a benign client"
    assert odds(0.0) == "below 1 in 10^300 for a benign client"
    assert odds(0.7).startswith("0.7: no surprise")
    assert odds("n/a") == "n/a"
    assert as_time(1796110800.0) == "2026-12-01 07:40 UTC"
    assert as_time(1796110805.0) == "2026-12-01 07:40:05 UTC"
    assert as_time(None) == "None"
    assert describe("volume", {"peak_window_count": "x", "baseline_mean_per_window": "y"}) == ""  # old shapes: no crash
    assert describe("unknown_kind", {"a": 1}) == "" and evidence_lines({"a": 1}, kind="unknown_kind") == ["a: 1"]
