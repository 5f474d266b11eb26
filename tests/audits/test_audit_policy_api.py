"""GET/PATCH /api/v1/models/{slug}/audit-policy: read by every role, changed by admins, checked as the admin
checks it (a policy that could not run is refused, naming the field, and nothing changes), changes trailed."""
from __future__ import annotations

import pytest

from audits.models import AuditPolicy
from monitor.trail.models import TrailEntry
from tests.factories import make_model, user_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/models/credit/audit-policy"


@pytest.fixture
def model():
    return make_model(slug="credit")


def patch(api, body):
    return api.client.patch(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}")


def test_every_role_reads_the_policy_defaults_included(model, api_as):
    response = api_as(user_token(role="viewer")).get(URL)
    assert response.status_code == 200
    assert response.json()["max_eval_records"] == 20_000 and response.json()["n_reference"] == 4
    assert not AuditPolicy.objects.filter(model=model).exists()  # reading inserts nothing
    assert api_as(None).get(URL).status_code == 401


@pytest.mark.parametrize(("body", "field", "phrase"), [
    ({"attacks": ["threshold", "lira_online"], "n_reference": 1}, "n_reference", "lira_online needs at least 2"),
    ({"attacks": ["magic"]}, "attacks", "unknown attack 'magic'"),
    ({"max_eval_records": 10}, "max_eval_records", "at least 100 records per side"),
    ({"max_tpr_at_1pct_fpr": 0}, "max_tpr_at_1pct_fpr", "greater than 0"),
])
def test_a_policy_that_could_not_run_is_refused_and_nothing_changes(model, api_as, body, field, phrase):
    response = patch(api_as(user_token(role="admin")), body)
    assert response.status_code == 400, response.content
    problems = {d["field"]: d["message"] for d in response.json()["details"]}
    assert phrase in problems[field], problems
    assert not AuditPolicy.objects.filter(model=model).exists()
    assert not TrailEntry.objects.filter(action="audit_policy.changed").exists()


def test_an_admin_changes_the_policy_and_the_trail_records_it(model, api_as):
    response = patch(api_as(user_token(role="admin")), {"attacks": ["threshold", "rmia", "lira_online"], "n_reference": 8})
    assert response.status_code == 200, response.content
    policy = AuditPolicy.objects.get(model=model)
    assert (policy.attacks, policy.n_reference) == (["threshold", "rmia", "lira_online"], 8)
    entry = TrailEntry.objects.get(action="audit_policy.changed")
    assert entry.before is None and entry.after["n_reference"] == 8


@pytest.mark.parametrize(("role", "body", "status"), [
    ("security", {"n_reference": 8}, 403),
    ("viewer", {"n_reference": 8}, 403),
    ("admin", {"n_references": 8}, 400),
    ("admin", {}, 400),
    ("admin", {"n_reference": "eight"}, 400),
])
def test_other_roles_and_malformed_bodies_change_nothing(model, api_as, role, body, status):
    assert patch(api_as(user_token(role=role)), body).status_code == status
    assert not AuditPolicy.objects.filter(model=model).exists()
