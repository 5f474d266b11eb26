"""Every page as each role sees it in Chromium: figures render (an SVG in every figure div), actions work."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audits import runner
from audits.scheduling import request_audit
from monitor.alerts.lifecycle import raise_signal
from monitor.demo.simulation import ApiClient, Plan, build_traffic, send
from monitor.detection.calibration import calibrate_model
from monitor.detection.scanning import scan_model
from tests.factories import ingest_token, make_audited_model, make_channel, make_user, signal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-password-1"


@pytest.fixture
def world(live_server):
    """A model with traffic, an attacker caught by the detectors, a finished audit and a channel."""
    import time

    model = make_audited_model(n=400, slug="credit")
    client = ApiClient(live_server.url, ingest_token(model=model))
    now = time.time()
    send(model, build_traffic(model, Plan(benign_clients=30, hours=24, seed=1), end=now - 3600 * 7), client)
    calibrate_model(model)
    send(model, build_traffic(model, Plan(benign_clients=30, hours=6, seed=2, attacks=("noise_sweep",)), end=now), client)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    scan_model(model)
    alert, _ = raise_signal(signal(model=model, client_id="attacker-noise-sweep", kind="manual_check", severity="warning"))
    make_channel(kind="email", target="sec@example.com")
    for role in ("admin", "security", "compliance", "viewer"):
        make_user(role=role, username=f"{role}-user", password=PASSWORD)
    return {"model": model, "run": run, "alert": alert}


def log_in(page, live_server, role: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", f"{role}-user")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def assert_figures_render(page) -> int:
    figures = page.locator("[data-figure]")
    count = figures.count()
    for i in range(count):
        figures.nth(i).locator("svg.main-svg").first.wait_for(timeout=15_000)
    return count


PAGES = [
    ("overview", "/", 2),
    ("model", "/models/credit/?period=24h", 5),
    ("client", "/models/credit/client?id=attacker-noise-sweep", 2),
    ("alerts", "/alerts/", 0),
    ("models", "/models/", 0),
]


@pytest.mark.parametrize("role", ["admin", "security", "compliance", "viewer"])
def test_each_role_sees_every_page_with_its_figures(page, live_server, world, screenshot, role):
    log_in(page, live_server, role)
    for name, path, min_figures in PAGES:
        response = page.goto(live_server.url + path)
        assert response.status == 200, (name, response.status)
        assert assert_figures_render(page) >= min_figures, name
        screenshot(f"{role}-{name}")
    page.goto(f"{live_server.url}/audits/{world['run'].pk}/")
    assert assert_figures_render(page) == 1 and "Policy breached" in page.content()
    screenshot(f"{role}-audit-run")
    page.goto(f"{live_server.url}/alerts/{world['alert'].pk}/")
    assert "Timeline" in page.content()
    assert page.locator("form[action$='/acknowledge/']").count() == (1 if role in ("admin", "security") else 0)
    channels = page.goto(f"{live_server.url}/channels/")
    assert channels.status == (200 if role == "admin" else 403)


def test_security_acknowledges_an_alert_from_the_page(page, live_server, world, screenshot):
    log_in(page, live_server, "security")
    page.goto(f"{live_server.url}/alerts/{world['alert'].pk}/")
    page.fill("form[action$='/acknowledge/'] input[name=note]", "looking into it")
    page.click("form[action$='/acknowledge/'] button")
    page.wait_for_selector(".flash")
    assert "acknowledged" in page.locator(".flash").first.inner_text()
    world["alert"].refresh_from_db()
    assert world["alert"].status == "acknowledged" and world["alert"].ack_note == "looking into it"
    assert world["alert"].acknowledged_by.username == "security-user"
    screenshot("security-acknowledged-alert")


def test_a_running_audit_shows_live_progress(page, live_server, world):
    from audits.models import AuditRun

    run = request_audit(world["model"], enqueue=False)
    AuditRun.objects.filter(pk=run.pk).update(status="running", progress=42, step="training offline reference model 2/4")
    log_in(page, live_server, "viewer")
    page.goto(f"{live_server.url}/audits/{run.pk}/")
    assert page.locator("#audit-progress").get_attribute("style") == "width: 42%"
    AuditRun.objects.filter(pk=run.pk).update(progress=77, step="what-if: label")
    # A locator, not wait_for_function: our Content-Security-Policy forbids the eval that the latter needs.
    expect(page.locator("#audit-step")).to_contain_text("what-if", timeout=10_000)
    assert "77%" in page.locator("#audit-progress").get_attribute("style")


def test_compliance_downloads_a_verifiable_evidence_bundle(page, live_server, world, tmp_path):
    from audits.evidence.verify import verify_bundle

    log_in(page, live_server, "compliance")
    page.goto(f"{live_server.url}/audits/{world['run'].pk}/")
    with page.expect_download() as download_info:
        page.click("#evidence-download")
    path = tmp_path / "bundle.zip"
    download_info.value.save_as(path)
    report = verify_bundle(path.read_bytes())
    assert report.ok, report.lines()


def test_viewers_have_no_download_button(page, live_server, world):
    log_in(page, live_server, "viewer")
    page.goto(f"{live_server.url}/audits/{world['run'].pk}/")
    assert page.locator("#evidence-download").count() == 0


def test_demo_history_shows_a_month_in_chromium(live_server, page, screenshot):
    """The demo's written history (monitor.demo.history) as a person sees it: the overview sparkline and the model
    page's TPR trend carry about thirty audits with the day-18 step, and the month's alerts are on the timeline."""
    from monitor.demo.history import write_history

    model = make_audited_model(n=300, slug="credit")
    run = runner.execute(request_audit(model, enqueue=False).pk)
    write_history(forest=model, forest_run=run, others=[])
    make_user(role="viewer", username="viewer-user", password=PASSWORD)
    log_in(page, live_server, "viewer")
    page.goto(f"{live_server.url}/?period=30d")
    assert_figures_render(page)
    sparkline = page.evaluate("""() => document.querySelector('[data-figure="spark-credit"]').data
        .map(t => (t.y || []).length)""")
    assert max(sparkline) >= 28, sparkline
    screenshot("demo-history-overview")
    page.goto(f"{live_server.url}/models/credit/?period=30d")
    assert_figures_render(page)
    values = page.evaluate("""() => { const div = document.querySelector('[data-figure="figure-tpr"]');
        const trace = div.data.find(t => t.mode === 'lines+markers'); return trace.y; }""")
    assert len(values) >= 28
    before, after = sum(values[:10]) / 10, sum(values[-6:-1]) / 5
    assert 1.6 < after / before < 2.4, (before, after)
    screenshot("demo-history-model")
