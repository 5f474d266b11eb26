"""GET /metrics: Prometheus text that prometheus_client's own parser reads, values equal to what the API says,
and never anonymous (a metrics token, or a user token with a role; an ingestion token is refused)."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from audits import runner
from audits.scheduling import request_audit
from monitor.alerts.lifecycle import raise_signal
from monitor.ingestion.rollups import fold_all
from monitor.models import Delivery, NotificationChannel
from tests.factories import ingest_token, make_audited_model, query, signal, user_token

pytestmark = pytest.mark.django_db


def scrape(client, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/metrics", **headers)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_equal_the_apis_figures(client):
    model = make_audited_model(n=200)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    raise_signal(signal(model=model, client_id="a", severity="critical"))
    raise_signal(signal(model=model, client_id="b", severity="warning"))
    token = ingest_token(model=model)
    posted = client.post(f"/api/v1/models/{model.slug}/queries", {"queries": [query(client_id=f"c{i}") for i in range(7)]},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert posted.status_code == 201
    fold_all()
    channel = NotificationChannel.objects.create(name="dead", kind="slack", target="https://hooks.example/x")
    Delivery.objects.create(channel=channel, event="test", key="k", status="failed")
    out = io.StringIO()
    call_command("issue_token", "--metrics", stdout=out)
    metrics_token = out.getvalue().strip()

    response = scrape(client, metrics_token)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(response.content.decode())
    viewer = {"HTTP_AUTHORIZATION": f"Bearer {user_token(role='viewer')}"}
    audit = client.get(f"/api/v1/audits/{run.pk}", **viewer).json()
    for fpr in ("0.001", "0.01", "0.1"):
        assert got[("mimonitor_audit_tpr_at_fpr", (("fpr", fpr), ("model", model.slug)))] == pytest.approx(
            audit["headline"]["tpr_at_fpr"][fpr]["value"])
    assert got[("mimonitor_audit_epsilon_lower", (("model", model.slug),))] == pytest.approx(
        audit["headline"]["epsilon_lower"])
    assert 0 <= got[("mimonitor_audit_age_seconds", (("model", model.slug),))] < 600
    summary = client.get(f"/api/v1/models/{model.slug}", **viewer).json()
    assert got[("mimonitor_queries_logged_total", (("model", model.slug),))] == summary["queries_logged"] == 7
    open_alerts = sum(v for (name, labels), v in got.items() if name == "mimonitor_open_alerts")
    assert open_alerts == summary["open_alerts"]
    for severity in ("critical", "warning"):
        listed = client.get(f"/api/v1/alerts?model={model.slug}&severity={severity}&status=unresolved", **viewer).json()
        assert got[("mimonitor_open_alerts", (("model", model.slug), ("severity", severity)))] == len(listed) >= 1
    # Nothing scanned yet: the lag is the age of the oldest logged query.
    assert got[("mimonitor_scanner_lag_seconds", (("model", model.slug),))] >= 0
    assert got[("mimonitor_deliveries_failed_total", (("kind", "slack"),))] == 1
    # A user token with any role scrapes too.
    assert scrape(client, user_token(role="viewer")).status_code == 200
    # Prometheus asking for OpenMetrics gets it.
    openmetrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}",
                             HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.content.decode().rstrip().endswith("# EOF")


def test_metrics_are_never_anonymous_and_the_metrics_token_reads_nothing_else(client):
    model = make_audited_model(n=100)
    anonymous = scrape(client)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert scrape(client, "mim_metrics_" + "x" * 40).status_code == 401
    assert scrape(client, ingest_token(model=model)).status_code == 403
    assert scrape(client, user_token(role=None)).status_code == 403
    out = io.StringIO()
    call_command("issue_token", "--metrics", stdout=out)
    metrics_token = out.getvalue().strip()
    assert metrics_token.startswith("mim_metrics_")
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").status_code == 403
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").status_code == 405


def test_the_grafana_dashboard_uses_only_exported_metrics(client):
    import json
    import re
    from pathlib import Path

    make_audited_model(n=100)
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/mi-monitor.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"mimonitor_[a-z_]+", target["expr"])}
    assert len(used) >= 6
    # Every family is declared on every scrape, with samples or not (a counter's samples carry _total).
    families = {family.name for family in text_string_to_metric_families(scrape(client, user_token(role="viewer")).content.decode())}
    exported = families | {f"{name}_total" for name in families}
    assert used <= exported, used - exported
