"""The model page states what an undetected attacker can do, and a security engineer applies the recommended
per-client throttle with one click (issue 29 item 3); the trail records it and the page shows it in force."""
from __future__ import annotations

import time

import pytest

from audits import runner
from audits.scheduling import request_audit
from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model
from monitor.trail.models import TrailEntry
from tests.browser.test_pages_in_chromium import log_in
from tests.detection.helpers import store
from tests.factories import make_audited_model, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_statement_and_the_throttle_button_on_the_model_page(page, live_server, screenshot):
    model = make_audited_model(slug="throttled", n=400)
    store(model, build_traffic(model, Plan(benign_clients=30, hours=24, seed=1), end=time.time() - 3600))
    calibrate_model(model)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    make_user(role="viewer", username="vic", password="a-long-password-1")
    make_user(role="security", username="sam", password="a-long-password-1")

    log_in(page, live_server, username="vic", password="a-long-password-1")
    page.goto(f"{live_server.url}/models/throttled/")
    statement = page.locator("#undetected-statement").inner_text()
    assert "records a day" in statement and "TPR" in statement
    assert page.locator("#throttle-form").count() == 0  # a viewer reads it, and cannot act
    assert f"audit #{run.pk}" in page.locator("#undetected-attacker").inner_text()
    page.context.clear_cookies()

    log_in(page, live_server, username="sam", password="a-long-password-1")
    page.goto(f"{live_server.url}/models/throttled/")
    records = int(statement.split("up to ")[1].split(" records")[0])
    target = max(1, records // 2)
    assert page.locator("#throttle-current").inner_text() == "none"
    page.fill("#throttle-form input[name=target]", str(target))
    page.click("#throttle-apply")
    page.wait_for_selector("#undetected-attacker")
    model.refresh_from_db()
    per_day = model.client_queries_per_day  # the loosest allowance that keeps the best attacker at the target
    assert per_day >= target and model.undetected_records_target == target
    assert f"{per_day} queries a day" in page.locator("#throttle-current").inner_text()
    after = page.locator("#undetected-statement").inner_text()
    assert int(after.split("up to ")[1].split(" records")[0]) <= target
    assert "Throttle applied" in page.locator("body").inner_text()
    screenshot("throttle-applied")
    entry = TrailEntry.objects.get(action="model.client_rate_limit")
    assert entry.actor_name == "sam" and entry.after["client_queries_per_day"] == per_day

    page.click("#throttle-remove")
    page.wait_for_selector("#undetected-attacker")
    assert page.locator("#throttle-current").inner_text() == "none"
    assert TrailEntry.objects.filter(action="model.client_rate_limit").count() == 2
