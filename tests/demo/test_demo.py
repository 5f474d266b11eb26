"""`manage.py demo`: a real model on UCI Adult, benign clients and one visible attacker; idempotent."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from monitor.demo.credit import CREDIT_SLUG
from monitor.demo.seed import ATTACKER, DEMO_SLUG
from monitor.ingestion.counts import client_count
from monitor.models import Alert, QueryLog, RegisteredModel

pytestmark = pytest.mark.django_db


@pytest.mark.long
def test_demo_seeds_model_users_and_an_attacker_once(capsys, tmp_path, settings):
    settings.DATA_DIR = tmp_path
    call_command("demo")
    out = capsys.readouterr().out
    model = RegisteredModel.objects.get(slug=DEMO_SLUG)
    assert model.n_features == 14 and model.class_labels == ["<=50K", ">50K"]
    assert {d.kind for d in model.datasets.all()} == {"members", "nonmembers", "population"}
    total = QueryLog.objects.filter(model=model).count()
    attacker = QueryLog.objects.filter(model=model, client_id=ATTACKER).count()
    assert attacker >= 1000 and total - attacker >= 4000
    assert client_count(model) >= 150
    # Calibrated on its first day without --exclude, the first scan still catches the attacker: one alert on it.
    caught = Alert.objects.filter(model=model, client_id=ATTACKER, source="detector")
    assert caught.count() == 1 and caught.get().severity in ("warning", "critical"), list(caught.values())
    for role in ("admin", "security", "compliance", "viewer"):
        assert f"demo-{role} / " in out
    check_credit_pipeline()
    check_candidates()
    logged = QueryLog.objects.count()
    call_command("demo")
    assert RegisteredModel.objects.count() == 4 and QueryLog.objects.count() == logged
    call_command("demo", "--if-empty")
    assert "not seeded" in capsys.readouterr().out
    check_history(model)


def check_candidates() -> None:
    """Two candidates gated for real against the hardened forest: its retrain passes, the unregularised one fails."""
    from audits.models import GateCandidate

    gated = {c.artifact_name: c for c in GateCandidate.objects.filter(model__slug="adult-income-hardened")}
    assert gated["hardened-retrain-seed1.skops"].verdict in ("pass", "warn"), gated["hardened-retrain-seed1.skops"].report
    failed = gated["unregularised-retrain.skops"]
    assert failed.verdict == "fail" and failed.exit_code == 1, failed.report
    assert any(c["significant"] for c in failed.report["comparisons"])


def check_credit_pipeline() -> None:
    """The credit model as a team builds it: a pipeline over raw rows, its attacker (a sweep holding categories)
    caught by the first scan, audited for real."""
    from audits.models import AuditRun

    model = RegisteredModel.objects.get(slug=CREDIT_SLUG)
    features = {f["name"]: f for f in model.features}
    assert features["workclass"]["kind"] == "categorical" and features["workclass"]["missing_seen"]
    assert features["age"]["kind"] == "numeric"
    caught = Alert.objects.filter(model=model, source="detector", client_id="attacker-noise-sweep")
    assert caught.exists(), list(Alert.objects.filter(model=model).values("client_id", "kind"))
    assert Alert.objects.filter(model=model, source="detector").exclude(client_id="attacker-noise-sweep").count() <= 1
    run = AuditRun.objects.filter(model=model).finished().get()
    assert run.status == "done" and run.tpr_at()["value"] > 0.01


def check_history(forest: RegisteredModel) -> None:
    """A month, not a dot: daily audits per model, the day-18 retrain doubling the forest's leakage (a regression
    alert), the hardened and labels-only companions lower, a low-and-slow attacker in week 2."""
    from datetime import timedelta

    from django.utils import timezone

    from audits.models import AuditRun
    from monitor.demo.history import SLOW_ATTACKER
    from monitor.models import ClientDayRollup, ModelHourRollup

    forest.refresh_from_db()
    assert forest.version == 2
    slugs = set(RegisteredModel.objects.values_list("slug", flat=True))
    assert slugs == {DEMO_SLUG, "adult-income-hardened", "adult-income-labels", CREDIT_SLUG}
    month_ago = timezone.now() - timedelta(days=29)
    for model in RegisteredModel.objects.exclude(slug=CREDIT_SLUG):
        runs = list(AuditRun.objects.filter(model=model).finished().order_by("finished_at"))
        assert len(runs) >= 28 and runs[0].finished_at < month_ago + timedelta(days=1)
        assert sum(bool(r.config.get("demo_history")) for r in runs) == len(runs) - 1  # all but today's, which is real
        assert not runs[-1].config.get("demo_history")
        assert ModelHourRollup.objects.filter(model=model, hour__lt=month_ago + timedelta(days=1)).exists()
    forest_runs = list(AuditRun.objects.filter(model=forest).finished().order_by("finished_at"))
    before = [r.tpr_at()["value"] for r in forest_runs if r.model_version == 1]
    after = [r.tpr_at()["value"] for r in forest_runs if r.model_version == 2]
    assert before and after and 1.6 < (sum(after) / len(after)) / (sum(before) / len(before)) < 2.4
    hardened = AuditRun.objects.filter(model__slug="adult-income-hardened", config__demo_history__isnull=True).get()
    assert hardened.tpr_at()["value"] < forest_runs[-1].tpr_at()["value"] / 2
    regression = Alert.objects.get(model=forest, kind="leakage_regression")
    assert 11 <= (timezone.now() - regression.first_seen).days <= 13
    slow = Alert.objects.get(model=forest, client_id=SLOW_ATTACKER)
    assert slow.status == "resolved" and 17 <= (timezone.now() - slow.first_seen).days <= 22
    assert ClientDayRollup.objects.filter(model=forest, client_id=SLOW_ATTACKER).count() == 5
    from django.test import Client

    from tests.factories import make_user

    viewer = Client()
    viewer.force_login(make_user(role="viewer", username="history-viewer"))
    assert 'id="demo-history"' in viewer.get(f"/audits/{forest_runs[0].pk}/").content.decode()
    assert 'id="demo-history"' not in viewer.get(f"/audits/{forest_runs[-1].pk}/").content.decode()
