"""An audit whose strongest attacks could not run says so: verdict "inconclusive — weak audit" (never "passed"),
a warning alert, and what to upload; a policy that cannot run is refused when it is saved."""
from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from django.core.exceptions import ValidationError
from sklearn.ensemble import RandomForestClassifier

from audits import runner
from audits.attacks.verdict import AuditAlertKind
from audits.models import AuditPolicy
from audits.scheduling import request_audit
from monitor.models import Alert
from monitor.registry.registration import Upload, register_model
from tests.factories import CLASSES, csv_bytes, make_audited_model, make_user

pytestmark = pytest.mark.django_db


def model_without_population(n_members: int = 300, n_nonmembers: int = 30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_members + n_nonmembers, 4)) * [10, 1000, 3, 1] + [40, 5000, 5, 0]
    y = np.asarray(CLASSES)[((X[:, 0] - 40 + rng.normal(scale=15, size=len(X))) > 0).astype(int)]
    estimator = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:n_members], y[:n_members])
    return register_model(slug="thin", name="Thin data", label_column="label",
                          artifact=Upload(sio.dumps(estimator), "rf.skops"),
                          members=Upload(csv_bytes(X[:n_members], y[:n_members])),
                          nonmembers=Upload(csv_bytes(X[n_members:], y[n_members:])))


def test_an_audit_that_could_not_run_its_reference_attacks_is_inconclusive_and_says_what_to_upload(client):
    model = model_without_population()
    run = runner.execute(request_audit(model, enqueue=False).pk)
    assert run.status == "done", run.error
    verdict = run.policy_result
    assert verdict["verdict"] == "inconclusive" and verdict["passed"] is False and not verdict["breaches"]
    assert verdict["weak_audit"] and "upload population data" in verdict["weak_audit"][0]
    assert set(run.result["config"]["coverage"]["skipped"]) == {"rmia", "lira_offline", "rmia_online"}
    alert = Alert.objects.get(model=model, kind=AuditAlertKind.WEAK_AUDIT)
    assert alert.severity == "warning" and alert.evidence["reasons"] == verdict["weak_audit"]
    client.force_login(make_user(role="viewer"))
    page = client.get(f"/audits/{run.pk}/").content.decode()
    assert "Inconclusive — weak audit" in page and "could not run: <strong>rmia</strong>" in page
    assert "inconclusive — weak audit" in client.get(f"/models/{model.slug}/").content.decode()
    api = client.get(f"/api/v1/audits/{run.pk}")
    assert api.status_code == 200, api.content
    assert api.json()["policy"]["verdict"] == "inconclusive"


def test_an_audit_with_a_population_is_judged_as_before():
    model = make_audited_model(n=200)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    assert run.policy_result["verdict"] in ("passed", "breached") and run.policy_result["weak_audit"] == []
    assert not Alert.objects.filter(model=model, kind=AuditAlertKind.WEAK_AUDIT).exists()


def test_a_policy_that_cannot_run_is_refused_when_saved():
    model = make_audited_model(n=100)
    policy = AuditPolicy(model=model, attacks=["threshold", "lira_online"], n_reference=1)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert "lira_online needs at least 2 reference models" in str(refused.value.message_dict["n_reference"])
    policy.attacks = ["threshold", "no_such_attack"]
    policy.n_reference = 4
    with pytest.raises(ValidationError, match="unknown attack 'no_such_attack'"):
        policy.full_clean()
    AuditPolicy(model=model, attacks=["threshold", "lira_online"], n_reference=2).full_clean()
