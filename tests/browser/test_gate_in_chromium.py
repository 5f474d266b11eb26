"""The privacy gate on the pages (issue 28): a security engineer uploads a candidate on the model page, watches
it being gated, reads the verdict, and promotes a failed candidate only by writing a reason."""
from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestClassifier

from audits.candidates import execute
from audits.models import GateCandidate
from tests.audits.test_gate_candidates import forest_bytes
from tests.browser.test_pages_in_chromium import log_in
from tests.factories import make_audited_model, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_candidate_is_uploaded_gated_and_promoted_with_a_reason_on_the_pages(page, live_server, screenshot, tmp_path):
    model = make_audited_model(slug="gated", n=400, estimator=RandomForestClassifier(
        n_estimators=50, min_samples_leaf=20, random_state=0))
    artifact = tmp_path / "leaf1.skops"
    artifact.write_bytes(forest_bytes(model, min_samples_leaf=1, seed=0))
    make_user(role="security", username="sam", password="a-long-password-1")
    log_in(page, live_server, username="sam", password="a-long-password-1")
    page.goto(f"{live_server.url}/models/gated/")
    assert "No candidate has been gated yet" in page.locator("#privacy-gate").inner_text()
    page.set_input_files("#candidate-form input[name=artifact]", str(artifact))
    page.click("#candidate-form button[type=submit]")
    page.wait_for_selector("#audit-status")
    candidate = GateCandidate.objects.get()
    assert page.url.endswith(f"/models/gated/candidates/{candidate.pk}/")
    assert page.locator("#audit-state").inner_text() == "queued"

    execute(candidate.pk)  # the worker's work; the page polls the API and reloads itself
    page.wait_for_selector("#gate-verdict", timeout=20_000)
    assert "fail" in page.locator("#gate-verdict h2").inner_text()
    assert "promoting it needs a written reason" in page.locator("#promotion").inner_text()
    screenshot("gate-candidate-failed")

    page.click("#promote")  # no reason: refused, nothing changes
    assert "Not promoted" in page.locator(".flash, .messages, body").first.inner_text()
    model.refresh_from_db()
    assert model.version == 1
    page.fill("#promote-form textarea[name=reason]", "Accepted by the risk board: internal scoring only for one week.")
    page.click("#promote")
    page.wait_for_selector("#candidates")
    model.refresh_from_db()
    assert model.version == 2
    assert "as v2 (with a reason)" in page.locator("#candidates").inner_text()
    page.goto(f"{live_server.url}/models/gated/candidates/{candidate.pk}/")
    assert "internal scoring only" in page.locator("#promotion-reason").inner_text()
    screenshot("gate-candidate-promoted")
