"""Remediation through the product: `run_audit --remediation --wait` on a deliberately overfit forest finds a
hardened candidate that at least halves TPR@1%FPR for at most one point of accuracy; the table is in the API and on
the audit page; the recommended model downloads (operate roles only, in the trail) as a skops file that loads with
the registry's trusted types and predicts the model's own labels."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import skops.io as sio
from django.core.management import call_command

from audits.models import AuditPolicy, AuditRun
from audits.scheduling import request_audit
from monitor.registry.artifacts import TRUSTED_SKOPS_TYPES
from monitor.trail.models import TrailEntry
from tests.factories import CLASSES, make_audited_model, make_user, user_token

pytestmark = pytest.mark.django_db(transaction=True)  # run_audit --wait runs the audit on its own thread


@pytest.fixture
def remediated():
    model = make_audited_model(n=600)
    out = io.StringIO()
    call_command("run_audit", model.slug, "--wait", "--remediation", stdout=out)
    run = AuditRun.objects.get(model=model)
    assert run.status == "done", run.error
    return model, run, out.getvalue()


def _get(client, path, role):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {user_token(role=role)}")


def test_a_hardened_candidate_halves_the_leakage_of_an_overfit_forest_for_at_most_a_point(client, remediated):
    model, run, printed = remediated
    assert run.remediation is True
    body = _get(client, f"/api/v1/audits/{run.pk}", "viewer").json()
    table = body["remediation"]
    assert table is not None and table["candidates"], table
    current = table["current"]["tpr_at_1pct_fpr"]["value"]
    assert current > 0.1, table["current"]  # the forest memorised its members
    best = table["candidates"][table["recommended"]]
    assert best["accuracy_cost"] <= 0.01 and best["tpr_at_1pct_fpr"]["value"] <= current / 2, best
    assert best["accuracy_cost"] == pytest.approx(table["current"]["accuracy"] - best["accuracy"])
    kinds = {c["kind"] for c in table["candidates"]}
    assert kinds == {"regularised", "dp"}  # diffprivlib covers random forests
    assert all(c["error"] is None for c in table["candidates"]), [c["error"] for c in table["candidates"]]
    # Every candidate carries its interval, and today's model is measured by the same attacks.
    for c in [table["current"], *table["candidates"]]:
        rate = c["tpr_at_1pct_fpr"]
        assert rate["low"] <= rate["value"] <= rate["high"]
    assert set(table["attacks"]) >= {"rmia", "lira_offline"}
    assert "recommended" in printed and "min_samples_leaf" in printed
    # NaN is not JSON that PostgreSQL accepts: every stored figure is a number or null.
    assert np.isfinite(table["seconds"]) and "NaN" not in json.dumps(table, allow_nan=False)
    # The page shows the table and the privacy–utility scatter with today's model and the output policies.
    client.force_login(make_user(role="viewer"))
    page = client.get(f"/audits/{run.pk}/").content.decode()
    assert 'id="remediation"' in page and "figure-remediation" in page and "today&#x27;s model" in page
    assert 'id="hardened-download"' not in page  # a viewer may not take the model away


def test_the_recommended_model_downloads_with_provenance_for_operators_only(client, remediated):
    model, run, _ = remediated
    path = f"/api/v1/audits/{run.pk}/remediation/artifact"
    assert _get(client, path, "viewer").status_code == 403
    assert _get(client, path, "compliance").status_code == 403
    response = _get(client, path, "security")
    assert response.status_code == 200, response.content[:300]
    blob = response.content
    assert hashlib.sha256(blob).hexdigest() == response["X-Artifact-SHA256"]
    provenance = json.loads(response["X-Provenance"])
    table = run.result["remediation"]
    assert provenance["setting"] == table["candidates"][table["recommended"]]["setting"]
    assert provenance["trained_on"]["members_sha256"] == run.data_sha256["members"]
    assert table["artifact"]["sha256"] == provenance["sha256"] == response["X-Artifact-SHA256"]
    untrusted = set(sio.get_untrusted_types(data=blob))
    assert untrusted <= TRUSTED_SKOPS_TYPES
    hardened = sio.loads(blob, trusted=sorted(untrusted))
    assert [str(c) for c in hardened.classes_] == list(CLASSES)
    members = model.datasets.get(kind="members").load()
    assert set(hardened.predict(members.X[:50])) <= set(CLASSES)
    assert TrailEntry.objects.filter(action="remediation.artifact_downloaded", object_id=str(run.pk)).count() == 1
    # A run without remediation has nothing to download, and says how to get one.
    plain = request_audit(model, enqueue=False, remediation=False)
    missing = _get(client, f"/api/v1/audits/{plain.pk}/remediation/artifact", "admin")
    assert missing.status_code == 404 and "remediation=true" in missing.json()["error"]


def test_the_policy_and_the_api_ask_for_remediation(client):
    model = make_audited_model(n=100)
    token = user_token(role="admin")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    bad = client.patch(f"/api/v1/models/{model.slug}/audit-policy", {"max_accuracy_cost": 2},
                       content_type="application/json", **auth)
    assert bad.status_code in (400, 422) and AuditPolicy.objects.for_model(model).max_accuracy_cost == 0.01
    ok = client.patch(f"/api/v1/models/{model.slug}/audit-policy", {"remediation": True, "max_accuracy_cost": 0.02},
                      content_type="application/json", **auth)
    assert ok.status_code == 200 and ok.json()["remediation"] is True and ok.json()["max_accuracy_cost"] == 0.02
    assert request_audit(model, enqueue=False).remediation is True  # the policy decides when the caller does not
    started = client.post(f"/api/v1/models/{model.slug}/audits?remediation=false", **auth)
    assert started.status_code == 202 and AuditRun.objects.get(pk=started.json()["id"]).remediation is False
    client.force_login(make_user(role="security"))
    client.post(f"/models/{model.slug}/audit/", {"remediation": "1"})
    assert AuditRun.objects.filter(model=model).latest("created_at").remediation is True



def test_an_onnx_model_runs_the_quantile_attack_beside_the_stand_ins_and_explains_no_remediation(client):
    """No estimator to clone: the reference attacks run on stand-ins, the quantile attack on the model's own answers,
    and hardened candidates are declined with the reason."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    from audits import runner
    from monitor.registry.registration import Upload, register_model
    from tests.factories import csv_bytes, make_data

    X, y = make_data(n=1600, seed=4)
    labels = np.where(y == "yes", "1", "0")
    estimator = RandomForestClassifier(30, random_state=0).fit(X[:400], labels[:400])
    onnx_bytes = to_onnx(estimator, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    model = register_model(slug="onnx-forest", name="ONNX forest", label_column="label",
                           artifact=Upload(onnx_bytes, "m.onnx"), members=Upload(csv_bytes(X[:400], labels[:400])),
                           nonmembers=Upload(csv_bytes(X[400:800], labels[400:800])),
                           population=Upload(csv_bytes(X[800:], labels[800:])))
    run = runner.execute(request_audit(model, enqueue=False, remediation=True).pk)
    assert run.status == "done", run.error
    names = [a["name"] for a in run.attack_results]
    assert "quantile" in names and "rmia" in names
    assert run.config["stand_in_used"] == "random_forest"
    table = run.result["remediation"]
    assert table["candidates"] == [] and "scikit-learn estimator" in table["notes"][0]
