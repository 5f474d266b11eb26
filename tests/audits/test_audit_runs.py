"""Audit runs in Django: provenance recorded, the policy judged, alerts opened, duplicate ticks harmless."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audits import runner
from audits.attacks.verdict import AuditAlertKind
from audits.models import AuditPolicy, AuditRun, ReferenceCache
from audits.scheduling import enqueue_due_audits, reap_stuck_runs, request_audit, slot_for
from monitor.models import Alert
from monitor.trail.models import TrailEntry
from tests.factories import ingest_token, make_audited_model, user_token

pytestmark = pytest.mark.django_db


def audit(model) -> AuditRun:
    run = request_audit(model, enqueue=False)
    return runner.execute(run.pk)


def test_a_leaky_model_breaches_its_policy_and_opens_an_incident():
    model = make_audited_model(leaky=True)
    run = audit(model)
    assert run.status == "done" and run.progress == 100, run.error
    headline = run.result["headline"]
    assert headline["tpr_at_fpr"]["0.01"]["value"] > 0.1
    assert run.artifact_sha256 == model.current_artifact().sha256
    assert set(run.data_sha256) == {"members", "nonmembers", "population"}
    assert run.environment["packages"]["scikit-learn"] and run.config["seed"] == 0
    assert not run.policy_result["passed"]
    assert {b["metric"] for b in run.policy_result["breaches"]} >= {"tpr_at_1pct_fpr"}
    alert = Alert.objects.get(model=model, kind=AuditAlertKind.POLICY_BREACH)
    assert alert.incident and alert.source == "audit" and alert.evidence["audit_run"] == run.pk
    assert TrailEntry.objects.filter(action="audit.finished", object_id=str(run.pk)).exists()


def test_a_placebo_model_reads_as_chance_and_raises_nothing():
    model = make_audited_model(leaky=False, slug="placebo")
    run = audit(model)
    assert run.status == "done", run.error
    headline = run.result["headline"]
    assert 0.4 < headline["auc"] < 0.62
    assert headline["tpr_at_fpr"]["0.01"]["low"] <= 0.02
    assert run.policy_result["passed"], run.policy_result
    assert not Alert.objects.filter(model=model).exists()


def test_reference_models_are_cached_and_reused_for_the_same_version():
    model = make_audited_model()
    first = audit(model)
    assert ReferenceCache.objects.filter(model=model).count() == 2  # offline and online (rmia_online)
    second = audit(model)
    assert any("reused" in note for note in second.result["notes"]), second.result["notes"]
    assert second.result["headline"] == first.result["headline"]


def test_an_mlp_s_reference_models_are_reused_too():
    """The expensive case the cache is for: a second audit of the same MLP pipeline (artifact and data unchanged)
    trains no reference model and reads the same headline."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0))
    model = make_audited_model(slug="mlp", n=300, estimator=mlp)
    first = audit(model)
    assert first.status == "done", first.error
    assert ReferenceCache.objects.filter(model=model).count() == 2
    assert {"reference_offline", "reference_online"} <= set(first.result["timings"])  # trained the first time
    second = audit(model)
    assert any("reused" in note for note in second.result["notes"]), second.result["notes"]
    assert second.result["headline"] == first.result["headline"]
    assert not {"reference_offline", "reference_online"} & set(second.result.get("timings") or {})  # nothing trained


def test_a_rise_against_the_previous_run_is_a_regression():
    """The previous run is made to read half today's figure; the next audit (same data, same cached references,
    the same headline) has doubled it: a regression at the policy's factor, naming that run, and its alert."""
    model = make_audited_model()
    previous = audit(model)
    rate = previous.result["headline"]["tpr_at_fpr"]["0.01"]
    halved = {**previous.result, "headline": {**previous.result["headline"],
                                              "tpr_at_fpr": {"0.01": {**rate, "value": rate["value"] / 2}}}}
    AuditRun.objects.filter(pk=previous.pk).update(result=halved)
    run = audit(model)
    assert run.result["headline"]["tpr_at_fpr"]["0.01"]["value"] == rate["value"]
    regression = run.policy_result["regression"]
    assert regression["factor"] == 2.0 and regression["previous_run"] == previous.pk
    assert regression["previous"] == rate["value"] / 2 and regression["now"] == rate["value"]
    alert = Alert.objects.get(model=model, kind=AuditAlertKind.LEAKAGE_REGRESSION)
    assert alert.evidence["audit_run"] == run.pk and alert.evidence["previous_run"] == previous.pk


def test_a_model_without_reference_data_fails_with_a_reason():
    model = make_audited_model()
    model.datasets.filter(kind="nonmembers").delete()
    run = audit(model)
    assert run.status == "failed" and "members and non-members" in run.error


def test_a_duplicated_beat_tick_creates_one_run_per_slot():
    model = make_audited_model()
    now = datetime(2026, 11, 28, 13, 30, tzinfo=UTC)
    first = enqueue_due_audits(now=now)
    second = enqueue_due_audits(now=now + timedelta(minutes=5))
    assert len(first) == 1 and second == []
    assert AuditRun.objects.filter(model=model).count() == 1
    assert AuditRun.objects.get().slot == slot_for(now, AuditPolicy.objects.ensure(model).cadence_hours)
    assert len(enqueue_due_audits(now=now + timedelta(hours=24))) == 1


def test_a_run_is_claimed_once_and_a_stale_one_is_requeued_then_failed(settings):
    model = make_audited_model()
    run = request_audit(model, enqueue=False)
    assert AuditRun.objects.claim(run.pk) and not AuditRun.objects.claim(run.pk)  # a redelivered message finds it taken
    later = timezone.now() + timedelta(seconds=settings.AUDIT_STALE_SECONDS + 5)
    assert reap_stuck_runs(now=later)["requeued"] == 1
    run.refresh_from_db()
    assert run.status == "queued" and "worker lost" in run.step
    assert AuditRun.objects.claim(run.pk)  # second attempt
    assert reap_stuck_runs(now=later + timedelta(seconds=settings.AUDIT_STALE_SECONDS + 5))["failed"] == 1
    run.refresh_from_db()
    assert run.status == "failed" and "stopped responding 2 times" in run.error


def test_api_starts_an_audit_and_reports_it(api_as):
    model = make_audited_model()
    response = api_as(user_token(role="security")).post(f"/api/v1/models/{model.slug}/audits")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    runner.execute(response.json()["id"])
    body = api_as(user_token(role="viewer")).get(f"/api/v1/audits/{response.json()['id']}").json()
    for key in ["id", "model", "status", "progress", "step", "error", "started_at", "finished_at", "headline", "attacks", "policy"]:
        assert key in body
    rate = body["headline"]["tpr_at_fpr"]["0.01"]
    assert set(rate) == {"value", "low", "high", "attack", "reliable", "expected_false_positives", "n_compared"}
    assert rate["low"] <= rate["value"] <= rate["high"]
    assert rate["expected_false_positives"] == body["attacks"][0]["n_nonmembers"] * 0.01
    assert {a["name"] for a in body["attacks"]} >= {"loss", "rmia", "lira_offline"}
    assert body["policy"]["passed"] is False
    model_body = api_as(user_token(role="viewer")).get(f"/api/v1/models/{model.slug}").json()
    assert model_body["latest_audit"]["id"] == body["id"] and model_body["open_alerts"] == 1


@pytest.mark.parametrize(("role", "status"), [("admin", 202), ("security", 202), ("compliance", 403), ("viewer", 403)])
def test_starting_an_audit_needs_security_or_admin(api_as, role, status):
    model = make_audited_model()
    assert api_as(user_token(role=role)).post(f"/api/v1/models/{model.slug}/audits").status_code == status


def test_ingestion_tokens_cannot_start_audits(api_as):
    model = make_audited_model()
    assert api_as(ingest_token(model=model)).post(f"/api/v1/models/{model.slug}/audits").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_run_audit_wait_prints_progress_and_headline(capsys):
    make_audited_model()
    call_command("run_audit", "leaky", "--wait")
    out = capsys.readouterr().out
    assert "100%" in out and "TPR at 1.0% FPR" in out and "BREACH tpr_at_1pct_fpr" in out


def test_audit_page_shows_metrics_roc_and_exposed_ids(client):
    from tests.factories import make_user

    model = make_audited_model()
    run = audit(model)
    client.force_login(make_user(role="compliance"))
    page = client.get(f"/audits/{run.pk}/").content.decode()
    assert "Policy breached" in page and 'data-figure="figure-roc"' in page and "What-if" in page
    leader = run.result["headline"]["tpr_at_fpr"]["0.01"]["attack"]
    top = next(a for a in run.result["attacks"] if a["name"] == leader)["top_exposed"][0]
    assert str(top) in page
    model_page = client.get(f"/models/{model.slug}/").content.decode()
    assert "figure-tpr" in model_page and "policy breached" in model_page


def test_audit_policy_is_edited_in_the_admin_with_validation_and_logged(client):
    from tests.factories import make_user

    model = make_audited_model()
    policy = AuditPolicy.objects.ensure(model)
    admin_user = make_user(role="admin")
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    url = f"/admin/audits/auditpolicy/{policy.pk}/change/"
    form = {"model": model.pk, "enabled": "on", "cadence_hours": 12, "attacks": '["threshold", "rmia", "magic"]',
            "n_reference": 4, "stand_in": "random_forest", "max_eval_records": 2000, "what_if": "on", "seed": 0,
            "max_tpr_at_1pct_fpr": 0.02, "max_epsilon_lower": 1.0, "regression_factor": 2.0, "max_accuracy_cost": 0.01,
            "gate_alpha": 0.05}
    response = client.post(url, form)
    assert response.status_code == 200 and "unknown attack &#x27;magic&#x27;" in response.content.decode()
    # A policy that could never run: online LiRA needs IN and OUT reference models for every record.
    response = client.post(url, {**form, "attacks": '["threshold", "lira_online"]', "n_reference": 1})
    assert response.status_code == 200
    assert "lira_online needs at least 2 reference models" in response.content.decode()
    response = client.post(url, {**form, "attacks": '["threshold", "rmia"]', "max_eval_records": 5})
    assert response.status_code == 200 and "at least 100 records per side" in response.content.decode()
    policy.refresh_from_db()
    assert policy.n_reference == 4 and policy.attacks != ["threshold", "lira_online"]  # nothing saved
    response = client.post(url, {**form, "attacks": '["threshold", "rmia"]'})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.cadence_hours == 12 and policy.attacks == ["threshold", "rmia"]
    entry = TrailEntry.objects.get(action="audit_policy.changed")
    assert entry.before["attacks"] != entry.after["attacks"] == ["threshold", "rmia"]
