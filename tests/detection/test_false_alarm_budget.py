"""One false-alarm budget for the product: the detectors share the model's budget (1e-3 false incidents per benign
client-day by default) evenly, a changed budget recalibrates on the same window, and on fresh benign traffic the
detectors were not calibrated on the false incidents stay within what the budget allows."""
from __future__ import annotations

import time

import pytest
from scipy.stats import poisson

from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model, model_detectors
from monitor.detection.context import state_for
from monitor.detection.detectors import detector_names
from monitor.detection.scanning import scan_model
from monitor.models import AlertAccount
from tests.detection.helpers import store
from tests.factories import make_audited_model, user_token

pytestmark = pytest.mark.django_db


def test_the_detectors_split_the_models_budget():
    model = make_audited_model(n=100)
    rates = {d.name: d.false_alarm_rate for d in model_detectors(model)}
    assert set(rates) == set(detector_names()) and sum(rates.values()) == pytest.approx(1e-3)
    model.false_alarm_budget = 6e-4
    assert sum(d.false_alarm_rate for d in model_detectors(model)) == pytest.approx(6e-4)


def test_a_changed_budget_recalibrates_on_the_same_window(client):
    model = make_audited_model(n=300)
    now = time.time()
    store(model, build_traffic(model, Plan(benign_clients=40, hours=24, seed=1), end=now - 3600))
    calibrate_model(model, exclude_clients=("nobody",))
    window = state_for(model).calibration_window
    patched = client.patch(f"/api/v1/models/{model.slug}", {"false_alarm_budget": 2e-4}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {user_token(role='admin')}")
    assert patched.status_code == 200 and patched.json()["false_alarm_budget"] == 2e-4
    assert client.patch(f"/api/v1/models/{model.slug}", {"false_alarm_budget": 0.5}, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {user_token(role='admin')}").status_code in (400, 422)
    scan_model(model)
    state = state_for(model)
    assert state.calibration["volume"]["false_alarm_rate"] == pytest.approx(2e-4 / len(detector_names()))
    again = dict(state.calibration_window)
    assert again.pop("reason") == "settings changed" and again.pop("previous_client_days") == window["client_days"]
    assert again == {k: v for k, v in window.items() if k not in ("reason", "previous_client_days")}  # same window


def test_fresh_benign_traffic_stays_within_the_budget():
    """Calibrated on one benign day, scanned on the next day of the same 400 clients (new queries): 400
    client-days at 1e-3 allow 0.4 false incidents; more than the Poisson 99.9 % bound (3) fails."""
    model = make_audited_model(n=600)
    now = time.time()
    store(model, build_traffic(model, Plan(benign_clients=400, hours=24, seed=11), end=now - 26 * 3600))
    calibrate_model(model)
    store(model, build_traffic(model, Plan(benign_clients=400, hours=24, seed=12), end=now - 60))
    scan_model(model)
    incidents = AlertAccount.objects.filter(alert__model=model, alert__source="detector").values("alert_id").distinct()
    allowed = int(poisson.ppf(0.999, 400 * model.false_alarm_budget))
    assert incidents.count() <= allowed, list(AlertAccount.objects.values_list("client_id", "alert__kind"))
