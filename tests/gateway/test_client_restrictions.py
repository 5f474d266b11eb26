"""Acting on an attacker at the gateway: restrict one client (labels only, rounded, throttled, blocked) until a
time or until lifted; other clients untouched; every restriction, lift and expiry in the trail and on the
client's alerts; the model's ingestion token can read what is in force."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from monitor.alerts.lifecycle import raise_signal
from monitor.gateway import restrictions
from monitor.models import AlertEvent, ClientRestriction, QueryLog
from monitor.trail.models import TrailEntry
from tests.factories import ingest_token, make_data, make_model, make_user, signal, user_token

pytestmark = pytest.mark.django_db
SLUG = "credit"


@pytest.fixture
def model():
    return make_model(slug=SLUG)


@pytest.fixture
def rows():
    X, _ = make_data(seed=7, n=3)
    return X.astype(np.float32).tolist()


def restrict(api, client_id, body):
    return api.post(f"/api/v1/models/{SLUG}/clients/{client_id}/restriction", body)


def lift(api, client_id):
    return api.client.delete(f"/api/v1/models/{SLUG}/clients/{client_id}/restriction",
                             HTTP_AUTHORIZATION=f"Bearer {api.token}")


def predict(api, rows, client_id):
    return api.post(f"/api/v1/models/{SLUG}/predict", {"client_id": client_id, "features": rows})


def test_label_only_reduces_that_clients_outputs_and_lifting_restores_them(model, api_as, rows):
    security, gateway = api_as(user_token(role="security")), api_as(ingest_token(model=model))
    alert, _ = raise_signal(signal(model=model, client_id="probe-1"))
    response = restrict(security, "probe-1", {"action": "label_only", "until": None, "reason": "sweep around members"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["action"], body["until"], body["created_by"]) == ("label_only", None, body["created_by"])
    answered = predict(gateway, rows, "probe-1").json()
    assert all(sorted(row) == [0.0, 1.0] for row in answered["outputs"]) and "restricted label" in answered["output_policy"]
    other = predict(gateway, rows, "app-2").json()
    assert not all(sorted(row) == [0.0, 1.0] for row in other["outputs"])  # other clients untouched
    # What is in force, to the serving layer's own token (and not to another model's).
    listed = gateway.get(f"/api/v1/models/{SLUG}/restrictions")
    assert listed.status_code == 200 and [r["client_id"] for r in listed.json()] == ["probe-1"]
    other_model = make_model(slug="other")
    assert api_as(ingest_token(model=other_model)).get(f"/api/v1/models/{SLUG}/restrictions").status_code == 403
    assert restrict(gateway, "probe-1", {"action": "block", "reason": "x"}).status_code in (401, 403)
    lifted = lift(security, "probe-1")
    assert lifted.status_code == 200 and lifted.json()["lift_reason"] == "lifted"
    assert not all(sorted(row) == [0.0, 1.0] for row in predict(gateway, rows, "probe-1").json()["outputs"])
    assert lift(security, "probe-1").status_code == 404
    assert list(TrailEntry.objects.filter(action__startswith="restriction.").values_list("action", flat=True)
                .order_by("seq")) == ["restriction.created", "restriction.lifted"]
    events = list(AlertEvent.objects.filter(alert=alert, kind__in=["restricted", "unrestricted"]).values_list("kind", flat=True))
    assert events == ["restricted", "unrestricted"]


def test_round_block_and_throttle_answer_as_the_issue_says(model, api_as, rows, settings):
    settings.RESTRICTED_QUERIES_PER_MINUTE = 4
    security, gateway = api_as(user_token(role="security")), api_as(ingest_token(model=model))
    assert restrict(security, "rounded", {"action": "round:1", "reason": "r"}).status_code == 201
    outputs = np.asarray(predict(gateway, rows, "rounded").json()["outputs"])
    assert np.allclose(outputs, np.round(outputs, 1))

    assert restrict(security, "blocked", {"action": "block", "reason": "candidate testing"}).status_code == 201
    before = QueryLog.objects.count()
    refused = predict(gateway, rows, "blocked")
    assert refused.status_code == 403 and "'blocked' is blocked on credit until it is lifted" in refused.json()["error"]
    assert "candidate testing" in refused.json()["error"] and QueryLog.objects.count() == before  # nothing logged

    assert restrict(security, "slow", {"action": "throttle", "reason": "burst"}).status_code == 201
    assert [predict(gateway, rows[:1], "slow").status_code for _ in range(4)] == [200] * 4
    throttled = predict(gateway, rows[:1], "slow")
    assert throttled.status_code == 429 and 1 <= int(throttled["Retry-After"]) <= 60
    assert "at most 4 queries a minute" in throttled.json()["error"]
    assert predict(gateway, rows[:1], "someone-else").status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "shout", "reason": "x"}, "action"),
    ({"action": "round:99", "reason": "x"}, "action"),
    ({"action": "noise:0.1", "reason": "x"}, "action"),
    ({"action": "block", "reason": "   "}, "reason"),
    ({"action": "block", "reason": "x", "until": "2001-01-01T00:00:00Z"}, "until"),
])
def test_a_bad_restriction_is_refused_naming_the_field(model, api_as, body, field):
    response = restrict(api_as(user_token(role="admin")), "c1", body)
    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["details"]] == [field]
    assert not ClientRestriction.objects.exists()


def test_a_restriction_lifts_itself_when_its_time_is_up_and_the_trail_says_so(model, rows, api_as):
    now = timezone.now()
    restrictions.restrict(model, "brief", action="block", until=now + timedelta(minutes=5), reason="brief block")
    with pytest.raises(restrictions.Restricted):
        restrictions.gateway_policy(model, "brief", 1, now=now + timedelta(minutes=4))
    assert restrictions.gateway_policy(model, "brief", 1, now=now + timedelta(minutes=6)) is None
    assert restrictions.expire_due(now=now + timedelta(minutes=6)) == 1
    expired = ClientRestriction.objects.get(client_id="brief")
    assert expired.lift_reason == "expired" and expired.lifted_at == expired.until
    assert TrailEntry.objects.filter(action="restriction.expired").count() == 1
    assert restrictions.expire_due(now=now + timedelta(minutes=7)) == 0


def test_a_new_restriction_replaces_the_current_one(model):
    restrictions.restrict(model, "c1", action="throttle", until=None, reason="first")
    restrictions.restrict(model, "c1", action="block", until=None, reason="second")
    assert [(r.action, r.lift_reason) for r in ClientRestriction.objects.order_by("id")] == [("throttle", "replaced"), ("block", "")]


def test_the_alert_and_client_pages_restrict_and_lift(model, client, api_as, rows):
    alert, _ = raise_signal(signal(model=model, client_id="probe-9"))
    client.force_login(make_user(role="security"))
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "Gateway restriction" in page and "No restriction" in page
    response = client.post(f"/models/{SLUG}/client/restriction", {
        "client_id": "probe-9", "op": "restrict", "action": "label_only", "hours": "24", "reason": "from the page",
        "next": f"/alerts/{alert.pk}/"})
    assert response.status_code == 302 and response["Location"] == f"/alerts/{alert.pk}/"
    restriction = restrictions.active(model, "probe-9")
    assert restriction.action == "label_only" and restriction.until > timezone.now() + timedelta(hours=23)
    assert "label_only" in client.get(f"/alerts/{alert.pk}/").content.decode()
    client.post(f"/models/{SLUG}/client/restriction", {"client_id": "probe-9", "op": "lift", "next": f"/alerts/{alert.pk}/"})
    assert restrictions.active(model, "probe-9") is None
    client.force_login(make_user(role="viewer", username="just-looking"))
    assert client.post(f"/models/{SLUG}/client/restriction", {"client_id": "probe-9", "op": "restrict",
                                                               "action": "block", "reason": "x"}).status_code == 403


def test_a_model_can_restrict_the_client_of_a_critical_detector_alert_by_itself(model, api_as):
    """Off by default; an admin turns it on (PATCH); a critical detector alert then restricts its client for the
    set hours, once, and the trail names it automatic."""
    from monitor.detection.detectors import Finding
    from monitor.detection.scanning import ScanSummary, record_findings

    def finding(client_id, severity):
        return Finding(detector="near_duplicate_sweep", client_id=client_id, score=9.0, severity=severity,
                       evidence={"p_value": 1e-9})

    record_findings(model, [finding("early", "critical")], range_start=1, range_end=10, summary=ScanSummary(SLUG))
    assert not ClientRestriction.objects.exists()  # off by default

    admin = api_as(user_token(role="admin"))
    bad = admin.client.patch(f"/api/v1/models/{SLUG}", data={"auto_restrict_action": "shout"},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin.token}")
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "auto_restrict_action"
    response = admin.client.patch(f"/api/v1/models/{SLUG}", data={"auto_restrict_action": "label_only",
                                                                  "auto_restrict_hours": 6},
                                  content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin.token}")
    assert response.status_code == 200, response.content
    assert response.json()["auto_restrict"] == {"action": "label_only", "severity": "critical", "hours": 6}
    model.refresh_from_db()

    record_findings(model, [finding("mild", "warning")], range_start=11, range_end=20, summary=ScanSummary(SLUG))
    assert not ClientRestriction.objects.filter(client_id="mild").exists()  # below the severity
    record_findings(model, [finding("probe", "critical")], range_start=21, range_end=30, summary=ScanSummary(SLUG))
    restriction = restrictions.active(model, "probe")
    assert restriction.action == "label_only" and restriction.reason.startswith("automatic: critical near_duplicate_sweep")
    assert timedelta(hours=5, minutes=59) < restriction.until - restriction.created_at <= timedelta(hours=6)
    record_findings(model, [finding("probe", "critical")], range_start=31, range_end=40, summary=ScanSummary(SLUG))
    assert ClientRestriction.objects.filter(client_id="probe").count() == 1  # already restricted: left alone
    assert TrailEntry.objects.filter(action="restriction.created").count() == 1
