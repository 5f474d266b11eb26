"""The API's response Schemas document what it returns, and drop or add nothing.

ninja passes every answer through its response Schema, which keeps only the keys the Schema declares: a key
added to a summary and forgotten in monitor/api/schemas.py would vanish from the API without an error. So each
read below must answer with exactly the keys (at every depth) and the bytes of the summary it is built from.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from ninja.responses import NinjaJSONEncoder

from audits import runner
from audits.models import AuditRun
from audits.scheduling import request_audit
from monitor.alerts.lifecycle import raise_signal
from monitor.api.models import model_out
from monitor.models import Alert, NotificationChannel, RegisteredModel
from monitor.registry.summary import model_summary
from tests.factories import make_audited_model, make_channel, make_user, signal, user_token

pytestmark = pytest.mark.django_db

SUCCESS = ("200", "201", "202")


def openapi_document() -> dict:
    browser = Client()
    browser.force_login(make_user(role="viewer"))
    return browser.get("/api/v1/openapi.json").json()


def named_components(schema: dict) -> list[str]:
    """The component schemas a response schema names: itself, a list's items, or every option of a union."""
    if "$ref" in schema:
        return [schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return named_components(schema.get("items", {}))
    options = schema.get("anyOf") or schema.get("oneOf") or []
    names = [named_components(option) for option in options]
    return [name for found in names for name in found] if names and all(names) else []


def test_every_json_answer_is_documented_by_a_named_schema() -> None:
    document = openapi_document()
    components = document["components"]["schemas"]
    checked = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post"):
                continue
            for status in SUCCESS:
                content = operation["responses"].get(status, {}).get("content", {})
                if "application/json" not in content:
                    continue  # an evidence ZIP
                names = named_components(content["application/json"]["schema"])
                assert names, f"{method.upper()} {path} {status} answers a bare {content['application/json']['schema']}"
                for name in names:
                    assert components[name].get("properties"), f"{method.upper()} {path}: {name} declares no keys"
                checked.append((method, path))
    assert len(checked) >= 14, checked  # every GET/POST but the two evidence ZIPs


# --- nothing dropped, nothing added ---------------------------------------------------------------

def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key at every depth, as a path ("headline.tpr_at_fpr.0.01.attack"; "[]" for any list item)."""
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            paths |= {f"{prefix}{key}"} | key_paths(item, f"{prefix}{key}.")
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{prefix}[].") for item in value))
    return set()


def assert_answers_exactly(response: Any, expected: Any) -> None:
    assert response.status_code == 200, response.content
    answered = json.loads(response.content)
    wanted = json.loads(json.dumps(expected, cls=NinjaJSONEncoder))
    assert key_paths(answered) - key_paths(wanted) == set(), "keys the schema added"
    assert key_paths(wanted) - key_paths(answered) == set(), "keys the schema dropped"
    # Same values, list order and null handling. Not the same bytes: the order of keys inside an object is the
    # schema's in the answer but the database's in the summary (PostgreSQL's jsonb reorders stored keys).
    assert answered == wanted


@pytest.fixture
def audited(api_as: Callable[[str | None], Any]) -> dict:
    """A leaky model audited once (its policy breach opens an alert), a detector alert on one of its clients,
    acknowledged, and a channel of each kind."""
    model = make_audited_model(slug="leaky")
    done = runner.execute(request_audit(model, enqueue=False).pk)
    assert done.status == "done", done.error
    detector_alert = raise_signal(signal(model=model, client_id="probe-1", severity="critical"))[0]
    api = api_as(user_token(role="admin"))
    assert api.post(f"/api/v1/alerts/{detector_alert.pk}/acknowledge", {"note": "looking"}).status_code == 200
    make_channel(kind="email", target="ops@example.com")
    make_channel(kind="slack", target="http://127.0.0.1:9/services/T000/B000/" + "x" * 24, models=["leaky"])
    return {"api": api, "model": model, "done": done}


def test_a_model_answers_exactly_its_summary(audited: dict) -> None:
    api, model = audited["api"], RegisteredModel.objects.get(slug="leaky")
    assert model_summary(model)["latest_audit"]["headline"] and model_summary(model)["datasets"]
    assert_answers_exactly(api.get("/api/v1/models/leaky"), model_out(model))
    assert_answers_exactly(api.get("/api/v1/models"), [model_out(m) for m in RegisteredModel.objects.all()])
    assert model_out(model)["undetected_attacker"]["tpr_at_1pct_fpr"] is not None


@pytest.mark.parametrize("full", [False, True])
def test_an_audit_run_answers_exactly_its_summary_done_or_queued(audited: dict, full: bool) -> None:
    api = audited["api"]
    queued = request_audit(audited["model"], enqueue=False)  # no headline, attacks or policy yet
    for run in (audited["done"], queued):
        run = AuditRun.objects.select_related("model").get(pk=run.pk)
        assert_answers_exactly(api.get(f"/api/v1/audits/{run.pk}?full={str(full).lower()}"), run.summary(full=full))
    done = AuditRun.objects.get(pk=audited["done"].pk).summary(full=full)
    assert done["headline"]["tpr_at_fpr"]["0.01"] and done["attacks"] and done["policy"]["breaches"]
    runs = audited["model"].audit_runs.select_related("model").order_by("-created_at")
    assert_answers_exactly(api.get("/api/v1/models/leaky/audits"), [run.summary() for run in runs])


def test_an_alert_answers_exactly_its_summary(audited: dict) -> None:
    api = audited["api"]
    alerts = Alert.objects.filter(model__slug="leaky").order_by("-last_seen", "-id")
    assert {alert.source for alert in alerts} == {"audit", "detector"}
    assert any(alert.acknowledged_by for alert in alerts)
    for alert in alerts:
        assert_answers_exactly(api.get(f"/api/v1/alerts/{alert.pk}"), alert.summary())
    assert_answers_exactly(api.get("/api/v1/alerts"), [alert.summary() for alert in alerts])


def test_channels_answer_exactly_their_summaries(audited: dict) -> None:
    channels = list(NotificationChannel.objects.all())
    assert {c.summary()["models"] is None for c in channels} == {True, False}
    assert_answers_exactly(audited["api"].get("/api/v1/channels"), [c.summary() for c in channels])
