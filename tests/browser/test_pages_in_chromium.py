"""The pages as a person sees them: log in, read the model page, see the Plotly figure render."""
from __future__ import annotations

import pytest

from tests.factories import ingest_token, make_model, make_user, query

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, *, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


@pytest.mark.parametrize("role", ["admin", "security", "compliance", "viewer"])
def test_each_role_logs_in_and_sees_the_model_traffic_figure(page, live_server, screenshot, client, role):
    model = make_model()
    client.post("/api/v1/models/credit/queries", data={"queries": [query(client_id="probe-9")] * 30 + [query()]},
                content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {ingest_token(model=model)}")
    make_user(role=role, username=f"{role}-user", password="a-long-password-1")
    log_in(page, live_server, username=f"{role}-user", password="a-long-password-1")
    assert page.locator("h1").first.inner_text() == "Overview"
    assert page.locator("table.grid").inner_text().count("Model credit") == 1
    page.click("text=Model credit")
    page.wait_for_selector("[data-figure] svg.main-svg", timeout=15_000)
    assert "probe-9" in page.locator("#busiest-clients").inner_text()
    screenshot(f"model-page-{role}")


def test_anonymous_visitor_is_sent_to_login(page, live_server, db):
    page.goto(f"{live_server.url}/models/")
    assert page.url.startswith(f"{live_server.url}/login/")
    assert page.locator("h1").inner_text() == "Log in"


def test_wrong_password_says_so(page, live_server, db):
    make_user(role="viewer", username="vera", password="a-long-password-1")
    log_in(page, live_server, username="vera", password="wrong")
    assert "did not match" in page.locator(".error").inner_text()


def test_signed_in_users_read_the_api_docs_without_policy_violations(page, live_server, db):
    make_user(role="viewer", username="vera", password="a-long-password-1")
    log_in(page, live_server, username="vera", password="a-long-password-1")
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    assert "/api/v1/models/{slug}/queries" in page.locator(".swagger-ui").inner_text()
