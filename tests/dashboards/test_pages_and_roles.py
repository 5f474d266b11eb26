"""Every page needs a login; each names the roles it admits."""
from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from monitor.models import RegisteredModel
from tests.factories import csv_bytes, make_data, make_user, skops_bytes

pytestmark = pytest.mark.django_db

# url name, kwargs, roles allowed
PAGES = [
    ("overview", {}, {"admin", "security", "compliance", "viewer"}),
    ("model-list", {}, {"admin", "security", "compliance", "viewer"}),
    ("model-detail", {"slug": "credit"}, {"admin", "security", "compliance", "viewer"}),
    ("model-register", {}, {"admin"}),
    ("client-detail", {"slug": "credit"}, {"admin", "security", "compliance", "viewer"}),
    ("audit-run", {"run_id": "?"}, {"admin", "security", "compliance", "viewer"}),
    ("evidence-public-key", {}, {"admin", "security", "compliance", "viewer"}),
    ("record-exposure", {"slug": "credit"}, {"admin", "security", "compliance"}),
    ("alert-list", {}, {"admin", "security", "compliance", "viewer"}),
    ("alert-detail", {"alert_id": "?"}, {"admin", "security", "compliance", "viewer"}),
    ("channel-list", {}, {"admin"}),
    ("candidate-detail", {"slug": "credit", "candidate_id": "?"}, {"admin", "security", "compliance", "viewer"}),
    ("candidate-report", {"slug": "credit", "candidate_id": "?", "kind": "sarif"},
     {"admin", "security", "compliance", "viewer"}),
]
# POST-only action URLs, with the roles that may use them. The downloads are here: each writes the security trail,
# so a form posts for it (tests/dashboards/test_no_writes_on_get.py).
ACTIONS = [
    ("audit-evidence", {"run_id": "?"}, {"admin", "security", "compliance"}),
    ("hardened-download", {"run_id": "?"}, {"admin", "security"}),
    ("exposure-download", {"slug": "credit"}, {"admin", "security", "compliance"}),
    ("alert-action", {"alert_id": "?", "action": "acknowledge"}, {"admin", "security"}),
    ("channel-action", {"channel_id": "?", "action": "test"}, {"admin"}),
    ("audit-start", {"slug": "credit"}, {"admin", "security"}),
    ("client-restriction", {"slug": "credit"}, {"admin", "security"}),
    ("candidate-submit", {"slug": "credit"}, {"admin", "security"}),
    ("client-rate-limit", {"slug": "credit"}, {"admin", "security"}),
    ("candidate-promote", {"slug": "credit", "candidate_id": "?"}, {"admin", "security"}),
]
ROLES = ["admin", "security", "compliance", "viewer", None]


@pytest.fixture
def objects(model) -> dict:
    """An alert and a channel for the URLs that name one ("?" in the tables)."""
    from monitor.alerts.lifecycle import raise_signal
    from monitor.ingestion.store import store_queries
    from monitor.ingestion.validate import QueryBatch
    from tests.factories import make_channel, signal

    rows = np.random.default_rng(0).normal(size=(40, 4))
    store_queries(model, QueryBatch(client_ids=[f"client-{i % 4}" for i in range(40)], timestamps=[timezone.now()] * 40,
                                    features=rows.astype(np.float32), outputs=np.full((40, 2), 0.5, dtype=np.float32),
                                    request_ids=[None] * 40))
    alert, _ = raise_signal(signal(model=model, client_id="client-1"))
    from audits.scheduling import request_audit

    run = request_audit(model, enqueue=False)
    from audits.candidates import Upload, submit

    candidate = submit(model, artifact=Upload(skops_bytes(seed=3), "candidate.skops"))
    return {"alert_id": alert.pk, "channel_id": make_channel(kind="email", target="sec@example.com").pk, "run_id": run.pk,
            "candidate_id": candidate.pk}


def url(name: str, kwargs: dict, objects: dict) -> str:
    address = reverse(name, kwargs={k: objects[k] if v == "?" else v for k, v in kwargs.items()})
    return address + "?id=client-1" if name == "client-detail" else address


@pytest.mark.parametrize(("name", "kwargs", "allowed"), PAGES + ACTIONS)
def test_anonymous_users_go_to_login(client, objects, name, kwargs, allowed):
    address = url(name, kwargs, objects)
    response = client.post(address) if (name, kwargs, allowed) in ACTIONS else client.get(address)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login")) and "next=" in response["Location"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "kwargs", "allowed"), PAGES)
def test_each_role_gets_exactly_its_pages(client, objects, name, kwargs, allowed, role):
    client.force_login(make_user(role=role))
    response = client.get(url(name, kwargs, objects))
    # A queued candidate has no report yet: its download sends the reader back to the candidate's page.
    assert response.status_code == ((302 if name == "candidate-report" else 200) if role in allowed else 403)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "kwargs", "allowed"), ACTIONS)
def test_each_role_gets_exactly_its_actions(client, objects, name, kwargs, allowed, role, smtp_server):
    client.force_login(make_user(role=role))
    response = client.post(url(name, kwargs, objects))
    # The evidence of a run still queued, and the hardened model of a run without one, redirect back to the run
    # with a message; the exposure CSV of a model never audited is its header row.
    assert response.status_code == ((200 if name == "exposure-download" else 302) if role in allowed else 403)


def test_every_url_is_covered_by_this_table():
    from monitor.urls import urlpatterns

    names = {p.name for p in urlpatterns if getattr(p, "name", None)}
    # /metrics is for scrapers: anonymous gets 401, not the login page (tests/dashboards/test_metrics.py); the sign-in steps
    # of single sign-on are public by nature (tests/access/test_sso.py).
    public = {"login", "logout", "metrics", "oidc_authentication_init", "oidc_authentication_callback", "sso-denied"}
    assert names - public == {name for name, _, _ in PAGES + ACTIONS}


def test_login_page_logs_in_and_out(client, model):
    make_user(role="viewer", username="vera", password="a-long-password-1")
    response = client.post(reverse("login"), {"username": "vera", "password": "a-long-password-1"})
    assert response.status_code == 302
    assert client.get(reverse("overview")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("overview")).status_code == 302


def test_login_form_is_csrf_protected(model):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    make_user(role="viewer", username="vera", password="a-long-password-1")
    assert strict.post(reverse("login"), {"username": "vera", "password": "a-long-password-1"}).status_code == 403


def test_overview_shows_models_and_an_empty_state(client, db):
    client.force_login(make_user(role="viewer"))
    assert "No models registered yet" in client.get(reverse("overview")).content.decode()


def test_model_page_shows_traffic_by_client(client, model, api_as):
    from tests.factories import ingest_token, query

    api_as(ingest_token(model=model)).post("/api/v1/models/credit/queries",
                                           {"queries": [query(client_id="suspicious-7")] * 5 + [query(client_id="ok-1")]})
    client.force_login(make_user(role="viewer"))
    page = client.get(reverse("model-detail", kwargs={"slug": "credit"}) + "?period=24h").content.decode()
    assert "suspicious-7" in page and 'data-figure="figure-volume"' in page
    assert "plotly/plotly.min.js" in page


def test_admin_registers_a_model_through_the_form(client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(make_user(role="admin"))
    form = {
        "slug": "web", "name": "Web", "label_column": "label", "output_policy": "full",
        "artifact": SimpleUploadedFile("m.skops", skops_bytes()),
        "members": SimpleUploadedFile("members.csv", csv_bytes(*make_data(seed=1))),
        "nonmembers": SimpleUploadedFile("nonmembers.csv", csv_bytes(*make_data(seed=2))),
    }
    response = client.post(reverse("model-register"), form)
    assert response.status_code == 302 and response["Location"] == reverse("model-detail", kwargs={"slug": "web"})
    assert RegisteredModel.objects.get(slug="web").source == "skops"


def test_the_form_shows_row_and_column_of_a_bad_cell(client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile

    X, y = make_data(seed=1)
    X[2, 0] = float("nan")
    client.force_login(make_user(role="admin"))
    response = client.post(reverse("model-register"), {
        "slug": "web", "name": "Web", "label_column": "label", "output_policy": "full",
        "artifact": SimpleUploadedFile("m.skops", skops_bytes()),
        "members": SimpleUploadedFile("members.csv", csv_bytes(X, y)),
        "nonmembers": SimpleUploadedFile("nonmembers.csv", csv_bytes(*make_data(seed=2))),
    })
    assert response.status_code == 400
    page = response.content.decode()
    assert "<td>3</td><td>age</td><td>empty cell" in page
    assert not RegisteredModel.objects.exists()


def test_the_form_refuses_a_pickle(client, db):
    import pickle

    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(make_user(role="admin"))
    response = client.post(reverse("model-register"), {
        "slug": "web", "name": "Web", "label_column": "label", "output_policy": "full",
        "artifact": SimpleUploadedFile("m.pkl", pickle.dumps({"a": 1})),
        "members": SimpleUploadedFile("members.csv", csv_bytes(*make_data(seed=1))),
        "nonmembers": SimpleUploadedFile("nonmembers.csv", csv_bytes(*make_data(seed=2))),
    })
    assert response.status_code == 400 and "pickle/joblib file" in response.content.decode()
    assert not RegisteredModel.objects.exists()


def test_non_admin_cannot_post_the_form(client, db):
    client.force_login(make_user(role="security"))
    assert client.post(reverse("model-register"), {"slug": "x"}).status_code == 403
    assert not RegisteredModel.objects.exists()


def test_groups_exist_after_migrations(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"admin", "security", "compliance", "viewer"}


def test_a_role_whose_group_was_deleted_can_still_be_granted(db):
    """Migration 0002 makes the groups; one deleted in the admin (or a database flushed since) is made again when
    a role is granted, instead of every grant failing."""
    import io

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from monitor.access.roles import role_groups, roles_of

    Group.objects.filter(name="security").delete()
    call_command("issue_token", user="sam", role="security", stdout=io.StringIO())
    assert roles_of(get_user_model().objects.get(username="sam")) == {"security"}
    with pytest.raises(ValueError, match="unknown role"):
        role_groups(["root"])


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("security", 302), ("viewer", 302)])
def test_django_admin_is_for_the_admin_role_only(client, db, role, status):
    user = make_user(role=role)
    user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get("/admin/").status_code == status
    if role == "admin":
        assert client.get("/admin/monitor/registeredmodel/").status_code == 200


def test_adding_a_model_in_the_django_admin_opens_the_registration_form(client, db):
    user = make_user(role="admin")
    user.is_staff = True
    user.save()
    client.force_login(user)
    response = client.get("/admin/monitor/registeredmodel/add/")
    assert response.status_code == 302 and response["Location"] == reverse("model-register")


@pytest.mark.parametrize(("role", "sees_members"), [("admin", True), ("security", True), ("compliance", False), ("viewer", False)])
def test_client_page_shows_member_density_only_to_admin_and_security(client, objects, role, sees_members):
    client.force_login(make_user(role=role))
    page = client.get(reverse("client-detail", kwargs={"slug": "credit"}) + "?id=client-1").content.decode()
    assert "figure-projection" in page and "figure-timeline" in page
    assert ('"name": "member density"' in page or '"name":"member density"' in page) == sees_members


def test_client_page_for_an_unknown_client_is_404(client, objects):
    client.force_login(make_user(role="viewer"))
    assert client.get(reverse("client-detail", kwargs={"slug": "credit"}) + "?id=nobody").status_code == 404


def test_model_page_searches_clients(client, objects):
    client.force_login(make_user(role="viewer"))
    page = client.get(reverse("model-detail", kwargs={"slug": "credit"}) + "?q=client-3").content.decode()
    assert "?id=client-3" in page and "?id=client-1" not in page


def test_model_page_leaves_the_scanners_state_and_key_unread(client, model):
    """The carried state (10.7 MB at 500 clients in bench/soak.py when it was one document) is never read by a page."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitor.detection.context import state_for
    from monitor.models import DetectorState, ScannerState

    state = state_for(model)
    DetectorState.objects.filter(pk=state.pk).update(watermark_id=42)
    ScannerState.objects.create(model=model, detector="volume", client_id="c", data=b'{"clients": {"n": 1}}',
                                seen_at=0.0)
    client.force_login(make_user(role="viewer"))
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("model-detail", kwargs={"slug": "credit"})).content.decode()
    assert "Scanned to query #42" in page
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "monitor_detectorstate"' in q["sql"]]
    assert reads and not any("fingerprint_key" in sql for sql in reads)
    assert not [q["sql"] for q in queries.captured_queries if "monitor_scannerstate" in q["sql"]]
