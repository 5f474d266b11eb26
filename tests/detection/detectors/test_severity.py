"""Findings that touch the audit's most exposed records go up one severity level."""

from __future__ import annotations

from monitor.detection.detectors import SEVERITIES, Finding, raise_severity_for_exposed, scan


def finding(severity: str, member_ids: list) -> Finding:
    return Finding(
        detector="training_proximity",
        client_id="c",
        score=4.0,
        severity=severity,
        evidence={"member_ids": member_ids},
    )


def test_each_level_goes_up_one_and_critical_stays_critical():
    raised = raise_severity_for_exposed([finding(s, [7, 8]) for s in SEVERITIES], most_exposed_ids=[8, 99])
    assert [f.severity for f in raised] == ["warning", "critical", "critical"]
    assert all(f.evidence["most_exposed_member_ids"] == ["8"] for f in raised)


def test_findings_that_touch_no_exposed_record_are_left_alone():
    untouched = [finding("warning", [1, 2]), finding("info", [])]
    assert raise_severity_for_exposed(untouched, most_exposed_ids=[3]) == untouched


def test_scan_raises_the_findings_on_exposed_members(attack_scan, context):
    with_members = [f for f in attack_scan.findings if f.member_ids]
    assert with_members
    exposed = {with_members[0].member_ids[0]}
    findings, _ = scan(attack_scan.batch, context, most_exposed_ids=exposed)
    before = {(f.detector, f.client_id): f for f in attack_scan.findings}
    assert len(findings) == len(before)
    for after in findings:
        old = before[(after.detector, after.client_id)]
        if exposed & set(old.member_ids):
            expected = SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(old.severity) + 1)]
            assert after.severity == expected
        else:
            assert after == old
