"""`manage.py demo`: a real model on UCI Adult, benign clients and one visible attacker; idempotent."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from monitor.demo.seed import ATTACKER, DEMO_SLUG
from monitor.models import QueryLog, RegisteredModel

pytestmark = pytest.mark.django_db


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
    assert model.client_count() >= 150
    for role in ("admin", "security", "compliance", "viewer"):
        assert f"demo-{role} / " in out
    call_command("demo")
    assert RegisteredModel.objects.count() == 1 and QueryLog.objects.count() == total
    call_command("demo", "--if-empty")
    assert "not seeded" in capsys.readouterr().out
