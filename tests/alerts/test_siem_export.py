"""SIEM export: one OCSF Detection Finding (class_uid 2004) per alert event, as NDJSON, or CSV; security and admin
only; bad input answered with what is wrong; every export in the trail."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts.lifecycle import acknowledge, raise_signal, resolve
from monitor.trail.models import TrailEntry
from tests.factories import make_user, signal, user_token

pytestmark = pytest.mark.django_db


def _get(client, path, role="security"):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {user_token(role=role)}")


def test_each_alert_event_is_one_ocsf_detection_finding(client, model):
    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    alert, _ = raise_signal(signal(model=model, client_id="probe-7", severity="warning"))
    raise_signal(signal(model=model, client_id="probe-7", severity="critical"))
    acknowledge(alert, user=make_user(role="security"), note="on it")
    resolve(alert, note="blocked")
    response = client.get("/api/v1/alerts/export", {"format": "ocsf", "since": since},
                          HTTP_AUTHORIZATION=f"Bearer {user_token(role='security')}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/x-ndjson")
    findings = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [f["unmapped"]["event"] for f in findings] == ["opened", "escalated", "acknowledged", "resolved"]
    assert {f["class_uid"] for f in findings} == {2004} and {f["category_uid"] for f in findings} == {2}
    assert [f["activity_id"] for f in findings] == [1, 2, 2, 3]
    assert [f["type_uid"] for f in findings] == [200401, 200402, 200402, 200403]
    assert [f["severity_id"] for f in findings] == [3, 5, 5, 5]  # warning = Medium, raised to Critical
    assert [f["status_id"] for f in findings] == [1, 1, 2, 4]
    first = findings[0]
    assert first["finding_info"]["uid"] == str(alert.pk) and first["finding_info"]["title"] == alert.title
    assert first["finding_info"]["src_url"].endswith(f"/alerts/{alert.pk}/")
    resources = {r["type"]: r for r in first["resources"]}
    assert resources["ML Model"]["name"] == model.slug and resources["API Client"]["uid"] == "probe-7"
    assert first["evidences"][0]["data"]["evidence"] == alert.evidence
    assert first["metadata"]["version"] and first["metadata"]["product"]["name"] == "MI Monitor"
    assert isinstance(first["time"], int) and first["metadata"]["correlation_uid"] == alert.fingerprint
    entry = TrailEntry.objects.get(action="alerts.exported")
    assert entry.after["events"] == 4 and entry.after["format"] == "ocsf"


def test_csv_export_roles_and_bad_input(client, model):
    since = (timezone.now() - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    raise_signal(signal(model=model, client_id="=cmd|calc", severity="critical"))
    response = client.get("/api/v1/alerts/export", {"format": "csv", "since": since},
                          HTTP_AUTHORIZATION=f"Bearer {user_token(role='admin')}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["event"] == "opened" and row["model"] == model.slug and row["severity"] == "critical"
    assert row["client_id"] == "'=cmd|calc"  # a formula is never run by a spreadsheet
    assert _get(client, f"/api/v1/alerts/export?since={since}", "viewer").status_code == 403
    assert _get(client, f"/api/v1/alerts/export?since={since}", "compliance").status_code == 403
    assert client.get(f"/api/v1/alerts/export?since={since}").status_code == 401
    for query, field in (("", "since"), ("since=yesterday", "since"), (f"since={since}&format=xml", "format"),
                         ("since=2026-12-01T00:00:00", "since"), (f"since={since}&model=nope", "model")):
        bad = _get(client, f"/api/v1/alerts/export?{query}")
        assert bad.status_code in (400, 422), (query, bad.status_code)
        assert field in bad.content.decode()
    later = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert _get(client, f"/api/v1/alerts/export?since={later}").content == b""
