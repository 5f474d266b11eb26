"""One incident per attacking actor: every detector's finding on a client, and on the accounts account linking ties
to it, fold into one alert whose evidence lists each signal and each account and whose severity is the strongest."""
from __future__ import annotations

import pytest

from monitor.alerts.evidence_text import evidence_lines
from monitor.detection.detectors import Finding
from monitor.detection.scanning import ScanSummary, record_findings
from monitor.models import Alert, ClientRestriction, DetectorFinding
from tests.factories import user_token

pytestmark = pytest.mark.django_db


def finding(detector: str, client: str, *, score: float = 4.0, severity: str = "warning", **evidence) -> Finding:
    return Finding(detector=detector, client_id=client, score=score, severity=severity, evidence=evidence)


def scan(model, findings, *, at: int) -> ScanSummary:
    summary = ScanSummary(model=model.slug)
    record_findings(model, findings, range_start=at, range_end=at, summary=summary)
    return summary


SWEEP = {"max_records_near_one_point": 60, "sweep_threshold": 8, "n_swept_cells": 3, "window_seconds": 600}


def test_every_detector_on_one_client_is_one_incident_with_the_strongest_severity(model):
    summary = scan(model, [finding("volume", "probe-1", score=4.0),
                           finding("near_duplicate_sweep", "probe-1", score=9.0, severity="critical", **SWEEP)], at=10)
    [alert] = Alert.objects.filter(model=model, source="detector")
    assert summary.new_alerts == 1 and summary.findings == 2
    assert alert.kind == "near_duplicate_sweep" and alert.severity == "critical" and alert.client_id == "probe-1"
    assert set(alert.evidence["signals"]) == {"volume", "near_duplicate_sweep"}
    assert alert.evidence["score"] == 9.0 and alert.evidence["max_records_near_one_point"] == 60
    # A later scan's new detector joins the same incident.
    scan(model, [finding("training_proximity", "probe-1", score=6.0, n_members_hit=12, n_regions=12)], at=20)
    alert.refresh_from_db()
    assert Alert.objects.filter(model=model, source="detector").count() == 1 and alert.occurrences == 2
    assert set(alert.evidence["signals"]) == {"volume", "near_duplicate_sweep", "training_proximity"}
    assert set(DetectorFinding.objects.values_list("alert_id", flat=True)) == {alert.pk}
    lines = evidence_lines(alert.evidence, kind=alert.kind)
    assert lines[0].startswith("Sent 60 distinct records")  # the lead detector's sentence first
    assert any(line.startswith("training_proximity: Queried 12 training records") for line in lines)
    assert any(line.startswith("volume: ") for line in lines)


def test_linked_accounts_fold_into_the_incident_and_are_found_by_any_of_them(client, model):
    scan(model, [finding("near_duplicate_sweep", "key-a", **SWEEP)], at=10)
    scan(model, [finding("account_linking", "key-b", score=7.0, severity="critical",
                         linked_clients=["key-a", "key-c"], n_linked_clients=2),
                 finding("volume", "key-c", score=5.0)], at=20)
    [alert] = Alert.objects.filter(model=model, source="detector")
    assert alert.client_id == "key-a" and alert.severity == "critical"
    assert alert.evidence["accounts"] == ["key-a", "key-b", "key-c"] and alert.evidence["n_accounts"] == 3
    assert set(alert.accounts.values_list("client_id", flat=True)) == {"key-a", "key-b", "key-c"}
    assert "3 linked accounts" in alert.title
    token = user_token(role="viewer")
    for key in ("key-a", "key-b", "key-c"):
        found = client.get(f"/api/v1/alerts?client={key}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
        assert [a["id"] for a in found] == [alert.pk], key
    assert client.get("/api/v1/alerts?client=key-d", HTTP_AUTHORIZATION=f"Bearer {token}").json() == []
    assert any(line.startswith("accounts (3): key-a, key-b, key-c") for line in evidence_lines(alert.evidence,
                                                                                                kind=alert.kind))


def test_separate_actors_stay_separate(model):
    scan(model, [finding("volume", "one"), finding("volume", "two"), finding("near_duplicate_sweep", "two", **SWEEP)],
         at=10)
    assert sorted(Alert.objects.filter(model=model).values_list("client_id", flat=True)) == ["one", "two"]


def test_automatic_restriction_covers_every_linked_account(model):
    model.auto_restrict_action, model.auto_restrict_severity, model.auto_restrict_hours = "block", "critical", 2
    model.save()
    scan(model, [finding("account_linking", "key-b", score=9.0, severity="critical", linked_clients=["key-a"]),
                 finding("near_duplicate_sweep", "key-a", score=9.5, severity="critical", **SWEEP)], at=10)
    restricted = set(ClientRestriction.objects.filter(model=model).values_list("client_id", flat=True))
    assert restricted == {"key-a", "key-b"}


def test_an_info_finding_alone_opens_no_incident_but_joins_one(model):
    """Info (a heavy but steady client's volume) is not evidence of an attack on its own: it is stored as a finding,
    opens nothing, and joins the actor's incident once another signal opens one."""
    summary = scan(model, [finding("volume", "steady-heavy", severity="info"),
                           finding("volume", "bursty", severity="warning")], at=10)
    assert summary.findings == 2 and summary.new_alerts == 1
    assert list(Alert.objects.filter(model=model).values_list("client_id", flat=True)) == ["bursty"]
    assert DetectorFinding.objects.get(client_id="steady-heavy").alert is None
    scan(model, [finding("volume", "bursty", severity="info", score=4.5)], at=20)
    [alert] = Alert.objects.filter(model=model)
    assert alert.occurrences == 2 and DetectorFinding.objects.filter(client_id="bursty", alert=alert).count() == 2
    scan(model, [finding("volume", "steady-heavy", severity="info", score=5.0),
                 finding("training_proximity", "steady-heavy", n_members_hit=12, n_regions=12)], at=30)
    incident = Alert.objects.get(model=model, client_id="steady-heavy")
    assert set(incident.evidence["signals"]) == {"volume", "training_proximity"}


@pytest.mark.django_db(transaction=True)
def test_two_scan_parts_finding_one_new_actor_at_once_open_one_incident():
    """Parts of a sharded scan commit their findings concurrently; the second to reach the incidents waits for the
    first's commit and joins its incident instead of opening its own (PostgreSQL: a per-model advisory lock)."""
    import threading

    from django.db import connection, transaction

    from tests.factories import make_audited_model

    if connection.vendor != "postgresql":
        pytest.skip("the lock is PostgreSQL's; SQLite serialises writers itself")
    model = make_audited_model(slug="raced")
    first_in, release, errors = threading.Event(), threading.Event(), []

    def part(detector: str, at: int, hold: bool) -> None:
        try:
            if not hold:
                first_in.wait(10)
            with transaction.atomic():
                scan(model, [finding(detector, "racer", **(SWEEP if detector == "near_duplicate_sweep" else {}))],
                     at=at)
                if hold:
                    first_in.set()
                    release.wait(10)
        except Exception as exc:  # noqa: BLE001  # reported below, on the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=part, args=("near_duplicate_sweep", 10, True)),
               threading.Thread(target=part, args=("training_proximity", 20, False))]
    for thread in threads:
        thread.start()
    first_in.wait(10)
    threads[1].join(1.0)
    assert threads[1].is_alive()  # waiting for the first part's commit
    release.set()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    [alert] = Alert.objects.filter(model=model, source="detector")
    assert set(alert.evidence["signals"]) == {"near_duplicate_sweep", "training_proximity"}
