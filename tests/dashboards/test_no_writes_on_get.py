"""A link cannot write the security trail in a signed-in person's name. The exposure lookup, the exposure CSV, the
evidence bundle and the hardened model each record who took them, so on the pages they are forms that POST with the
CSRF token (the record id in the body, out of URLs and access logs); a GET shows the form or answers 405 and writes
nothing. In the API a browser session may not GET them (403, nothing written); bearer-token clients GET as before."""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audits import runner
from audits.scheduling import request_audit
from monitor.trail.models import TrailEntry
from tests.factories import make_audited_model, make_user, user_token

pytestmark = pytest.mark.django_db

WRITES = ("exposure.lookup", "exposure.export", "evidence.exported", "remediation.artifact_downloaded")


@pytest.fixture
def audited():
    model = make_audited_model(n=200)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    assert run.status == "done", run.error
    return model, run


def written() -> list[str]:
    return list(TrailEntry.objects.filter(action__in=WRITES).values_list("action", flat=True))


def signed_in(role: str = "admin", *, strict: bool = False) -> Client:
    browser = Client(enforce_csrf_checks=strict)
    browser.force_login(make_user(role=role))
    return browser


def csrf_token(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def exports(model, run) -> dict[str, str]:
    return {"exposure.export": reverse("exposure-download", kwargs={"slug": model.slug}),
            "evidence.exported": reverse("audit-evidence", kwargs={"run_id": run.pk}),
            "remediation.artifact_downloaded": reverse("hardened-download", kwargs={"run_id": run.pk})}


def test_a_signed_in_get_of_the_lookup_shows_the_form_and_writes_nothing(audited):
    model, run = audited
    record_id = run.most_exposed_ids()[0]
    browser = signed_in("compliance")
    page = browser.get(reverse("record-exposure", kwargs={"slug": model.slug}) + f"?record={quote(record_id)}")
    assert page.status_code == 200
    html = page.content.decode()
    form = re.search(r'<form method="post" id="exposure-search"[^>]*>(.*?)</form>', html, re.DOTALL)
    assert form is not None and 'name="csrfmiddlewaretoken"' in form.group(1)
    assert 'id="exposure-result"' not in html
    assert written() == []


@pytest.mark.parametrize("action", ["exposure.export", "evidence.exported", "remediation.artifact_downloaded"])
def test_a_signed_in_get_of_an_export_answers_405_and_writes_nothing(audited, action):
    model, run = audited
    response = signed_in("admin").get(exports(model, run)[action])
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert written() == []


def test_a_cross_site_post_without_the_csrf_token_is_refused(audited):
    model, run = audited
    browser = signed_in("admin", strict=True)
    lookup = browser.post(reverse("record-exposure", kwargs={"slug": model.slug}),
                          {"record": run.most_exposed_ids()[0]})
    assert lookup.status_code == 403 and "CSRF" in lookup.content.decode()
    for address in exports(model, run).values():
        assert browser.post(address).status_code == 403
    assert written() == []


def test_a_post_with_the_token_looks_the_record_up_with_the_id_in_the_body_only(audited):
    model, run = audited
    record_id = run.most_exposed_ids()[0]
    browser = signed_in("compliance", strict=True)
    address = reverse("record-exposure", kwargs={"slug": model.slug})
    form = browser.get(address).content.decode()
    answer = browser.post(address, {"record": record_id, "csrfmiddlewaretoken": csrf_token(form)})
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'id="exposure-result"' in html and f"<code>{record_id}</code>" in html
    assert answer.request["PATH_INFO"] == address and not answer.request.get("QUERY_STRING")
    lookups = TrailEntry.objects.filter(action="exposure.lookup")
    assert [(e.after["record_id"], e.actor_name.startswith("compliance")) for e in lookups] == [(record_id, True)]


def test_exports_posted_with_the_token_download_and_are_recorded(audited):
    model, run = audited
    browser = signed_in("compliance", strict=True)
    token = csrf_token(browser.get(reverse("record-exposure", kwargs={"slug": model.slug})).content.decode())
    addresses = exports(model, run)
    csv = browser.post(addresses["exposure.export"], {"csrfmiddlewaretoken": token})
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    bundle = browser.post(addresses["evidence.exported"], {"csrfmiddlewaretoken": token})
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/zip"
    assert sorted(written()) == ["evidence.exported", "exposure.export"]


def api_paths(model, run, record_id: str) -> dict[str, str]:
    today = timezone.now().date()
    return {"exposure.lookup": f"/api/v1/models/{model.slug}/records/{record_id}/exposure",
            "exposure.export": f"/api/v1/models/{model.slug}/exposure.csv",
            "evidence.exported": f"/api/v1/audits/{run.pk}/evidence.zip",
            "evidence.exported (period)": f"/api/v1/models/{model.slug}/evidence.zip?start={today}&end="
                                          f"{today + timedelta(days=1)}",
            "remediation.artifact_downloaded": f"/api/v1/audits/{run.pk}/remediation/artifact"}


def test_a_browser_session_may_not_get_the_api_endpoints_that_write_the_trail(audited):
    model, run = audited
    browser = signed_in("admin")
    for what, path in api_paths(model, run, run.most_exposed_ids()[0]).items():
        response = browser.get(path)
        assert response.status_code == 403, (what, response.content[:300])
        assert "bearer token" in response.json()["error"], what
    assert written() == []


def test_a_bearer_token_get_still_works_and_is_recorded(audited):
    model, run = audited
    record_id = run.most_exposed_ids()[0]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {user_token(role='admin')}")
    paths = api_paths(model, run, record_id)
    lookup = api.get(paths["exposure.lookup"])
    assert lookup.status_code == 200 and lookup.json()["audits"][0]["audit_id"] == run.pk
    assert api.get(paths["exposure.export"]).status_code == 200
    assert api.get(paths["evidence.exported"]).status_code == 200
    assert sorted(written()) == ["evidence.exported", "exposure.export", "exposure.lookup"]
    # A session cookie beside the token changes nothing: the token speaks.
    both = signed_in("viewer")
    both.defaults["HTTP_AUTHORIZATION"] = f"Bearer {user_token(role='compliance')}"
    assert both.get(paths["exposure.lookup"]).status_code == 200
