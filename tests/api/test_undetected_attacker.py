"""What an undetected attacker can do per account-day (issue 29 item 3): on every model in the API, null figures with
the reason before calibration and audit; the recommended per-client throttle applied by one PATCH, in the trail, and
enforced by the predict gateway."""
from __future__ import annotations

import time

import numpy as np
import pytest

from audits import runner
from audits.scheduling import request_audit
from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model
from monitor.models import ClientUsage, QueryLog, RegisteredModel
from monitor.trail.models import TrailEntry
from tests.detection.helpers import store
from tests.factories import ingest_token, make_audited_model, make_model, user_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def watched():
    """A model with a finished audit and detectors calibrated on a benign day."""
    model = make_audited_model(slug="watched", n=400)
    store(model, build_traffic(model, Plan(benign_clients=30, hours=24, seed=1), end=time.time() - 3600))
    calibrate_model(model)
    runner.execute(request_audit(model, enqueue=False).pk)
    return model


def test_every_model_carries_the_statement_with_nulls_and_the_reason_before_calibration(api_as):
    make_model(slug="fresh")
    api = api_as(user_token(role="viewer"))
    listed = {m["slug"]: m for m in api.get("/api/v1/models").json()}
    statement = api.get("/api/v1/models/fresh").json()["undetected_attacker"]
    assert listed["fresh"]["undetected_attacker"] == statement
    assert statement["records_per_account_day"] is None and statement["tpr_at_1pct_fpr"] is None
    assert statement["recommended_rate_limit"]["per_minute"] is None
    assert "calibrated" in statement["basis"] and "first finished audit" in statement["basis"]
    assert statement["current_rate_limit"] == {"per_minute": None, "per_day": None}


def test_a_calibrated_audited_model_states_records_and_tpr_from_its_own_figures(api_as, watched):
    statement = api_as(user_token(role="viewer")).get("/api/v1/models/watched").json()["undetected_attacker"]
    run = watched.audit_runs.get()
    headline = run.headline["tpr_at_fpr"]["0.01"]
    assert statement["tpr_at_1pct_fpr"] == headline["value"]
    assert statement["tpr_interval"] == [headline["low"], headline["high"]]
    assert statement["audit_id"] == run.pk and f"audit #{run.pk}" in statement["basis"]
    assert isinstance(statement["records_per_account_day"], int) and statement["records_per_account_day"] > 0
    assert "client-days" in statement["basis"]


def test_the_recommended_throttle_is_applied_by_one_patch_recorded_and_enforced(api_as, watched):
    records = api_as(user_token(role="viewer")).get("/api/v1/models/watched").json()[
        "undetected_attacker"]["records_per_account_day"]
    target = max(1, records // 2)
    security = api_as(user_token(role="security"))
    for role in ("viewer", "compliance"):
        refused = api_as(user_token(role=role)).patch("/api/v1/models/watched/client-rate-limit",
                                                      {"apply": "recommended", "target_records_per_account_day": target})
        assert refused.status_code == 403
    entries = TrailEntry.objects.count()
    response = security.patch("/api/v1/models/watched/client-rate-limit",
                              {"apply": "recommended", "target_records_per_account_day": target})
    assert response.status_code == 200, response.content
    after = response.json()
    per_day = after["current_rate_limit"]["per_day"]
    # Candidates and cover share the allowance and the detectors bound the candidates within it: the loosest
    # allowance that keeps the best attacker at the target is looser than the target itself.
    assert per_day >= target and after["current_rate_limit"]["per_minute"] == max(1, -(-per_day // 60))
    assert after["records_per_account_day"] <= target  # the throttle binds now
    assert f"within the throttle's {per_day:,} queries a day" in after["basis"]
    assert after["recommended_rate_limit"]["per_day"] is None and "none needed" in after["basis"]
    watched.refresh_from_db()
    assert (watched.client_queries_per_day, watched.undetected_records_target) == (per_day, target)
    entry = TrailEntry.objects.get(action="model.client_rate_limit")
    assert TrailEntry.objects.count() == entries + 1  # one entry, naming the caller
    assert entry.before["client_queries_per_day"] == 0 and entry.after["client_queries_per_day"] == per_day
    assert entry.after["basis"]["records_per_account_day"] == records

    # Nothing more to apply: 409, nothing changed, nothing recorded.
    again = security.patch("/api/v1/models/watched/client-rate-limit", {"apply": "recommended"})
    assert again.status_code == 409 and "none needed" in again.json()["details"][0]["message"]
    assert TrailEntry.objects.count() == entries + 1

    # The gateway: a client gets its minute's allowance, the next row is refused and not logged; another client is not.
    api = api_as(ingest_token(model=watched))
    row = [40.0, 5000.0, 5.0, 0.1]
    per_minute = after["current_rate_limit"]["per_minute"]
    assert api.post("/api/v1/models/watched/predict", {"client_id": "c1", "features": [row] * per_minute}).status_code == 200
    logged = QueryLog.objects.filter(model=watched).count()
    refused = api.post("/api/v1/models/watched/predict", {"client_id": "c1", "features": [row]})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "a minute" in refused.json()["error"] and QueryLog.objects.filter(model=watched).count() == logged
    assert api.post("/api/v1/models/watched/predict", {"client_id": "c2", "features": [row]}).status_code == 200


def test_a_refused_minute_counts_nothing_against_the_day(api_as):
    model = make_model(slug="limited")
    security = api_as(user_token(role="admin"))
    assert security.patch("/api/v1/models/limited/client-rate-limit", {"per_minute": 3, "per_day": 10}).status_code == 200
    api = api_as(ingest_token(model=model))
    rows = np.random.default_rng(0).normal(size=(4, 4)).tolist()
    assert api.post("/api/v1/models/limited/predict", {"client_id": "c1", "features": rows[:3]}).status_code == 200
    assert api.post("/api/v1/models/limited/predict", {"client_id": "c1", "features": rows[:1]}).status_code == 429
    day = ClientUsage.objects.get(model=model, client_id="c1", span=ClientUsage.DAY)
    assert day.queries == 3
    # A day's allowance: the rows of the day so far count, the one past it is refused.
    assert security.patch("/api/v1/models/limited/client-rate-limit", {"per_minute": 0, "per_day": 4}).status_code == 200
    assert api.post("/api/v1/models/limited/predict", {"client_id": "c1", "features": rows[:1]}).status_code == 200
    refused = api.post("/api/v1/models/limited/predict", {"client_id": "c1", "features": rows[:1]})
    assert refused.status_code == 429 and "a day" in refused.json()["error"]
    # Off again: 0 or null.
    assert security.patch("/api/v1/models/limited/client-rate-limit", {"per_minute": 0, "per_day": None}).json()[
        "current_rate_limit"] == {"per_minute": None, "per_day": None}
    assert api.post("/api/v1/models/limited/predict", {"client_id": "c1", "features": rows}).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({}, "apply"),
    ({"apply": "recommended", "per_day": 5}, "apply"),
    ({"apply": "everything"}, "apply"),
    ({"per_day": -1}, "per_day"),
    ({"per_minute": 1.5}, "per_minute"),
    ({"per_day": 10**12}, "per_day"),
    ({"target_records_per_account_day": 0}, "target_records_per_account_day"),
    ({"per_hour": 5}, "per_hour"),
])
def test_bad_bodies_are_refused_naming_the_field_and_change_nothing(api_as, body, field):
    make_model(slug="guarded")
    response = api_as(user_token(role="admin")).patch("/api/v1/models/guarded/client-rate-limit", body)
    assert response.status_code in (400, 422), response.content
    assert field in response.content.decode()
    model = RegisteredModel.objects.get(slug="guarded")
    assert (model.client_queries_per_minute, model.client_queries_per_day, model.undetected_records_target) == (0, 0, 100)
    assert not TrailEntry.objects.filter(action="model.client_rate_limit").exists()


def test_before_calibration_applying_the_recommendation_is_a_conflict(api_as):
    make_model(slug="new")
    response = api_as(user_token(role="security")).patch("/api/v1/models/new/client-rate-limit", {"apply": "recommended"})
    assert response.status_code == 409
    assert "calibrated" in response.json()["details"][0]["message"]
