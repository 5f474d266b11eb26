"""Plotly draws a subset of HTML in every string of a figure (<a href>, <b>, <br>, ...), so a client id, an alert
title or a model's name that carries a tag would become a link on our pages. Every such string reaches a figure
escaped (Plotly shows &lt; as <, so people still read the id as sent); only the markup we add ourselves stays."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from monitor.dashboards import audit_charts, charts

LINK = '<a href="https://evil.example">click</a>'
SHOWN = '&lt;a href="https://evil.example"&gt;click&lt;/a&gt;'  # what Plotly receives: it draws the text, not a link
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def strings(value) -> list[str]:
    """Every string anywhere in a figure, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [*strings(key), *strings(item)]]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings(item)]
    return []


def assert_no_planted_markup(figure: dict) -> None:
    planted = [s for s in strings(figure) if re.search(r"<\s*/?\s*a\b", s, re.IGNORECASE)]
    assert planted == [], planted


def test_client_ids_in_the_volume_chart_are_text():
    figure = charts.query_volume_figure(series={LINK: ([NOW], [3]), "other clients": ([NOW], [9])},
                                        title=f"Queries per day from {LINK}")
    assert_no_planted_markup(figure)
    assert figure["data"][0]["name"] == SHOWN and SHOWN in figure["layout"]["title"]["text"]


def test_a_client_id_in_the_timeline_title_and_the_projection_legend_is_text():
    timeline = charts.client_timeline_figure(minutes=[NOW], counts=[4], confidence=[0.9], title=f"Queries from {LINK}")
    assert_no_planted_markup(timeline)
    points = np.zeros((3, 2))
    projection = charts.projection_figure(production=points, client=points, explained=(0.5, 0.2), client_id=LINK)
    assert_no_planted_markup(projection)
    assert projection["data"][-1]["name"] == SHOWN


def test_the_alert_timeline_escapes_titles_client_ids_and_model_names_and_keeps_its_own_line_break():
    alert = SimpleNamespace(severity="critical", first_seen=NOW, model=SimpleNamespace(slug=LINK), title=LINK,
                            kind="near_duplicate_sweep", client_id=LINK, status="open")
    figure = charts.alert_timeline_figure([alert], title="Alerts opened, last 7d", start=NOW - timedelta(days=7),
                                          end=NOW)
    assert_no_planted_markup(figure)
    trace = figure["data"][0]
    assert trace["text"] == [f"{SHOWN}<br>{SHOWN} · open"]  # our <br> stays a line break
    assert trace["y"] == [SHOWN]


def test_client_ids_on_the_detector_heatmap_axis_are_text():
    findings = [{"client_id": LINK, "created_at": NOW, "score": 7.0}, {"client_id": "client-1", "created_at": NOW,
                                                                         "score": 2.0}]
    figure = charts.detector_heatmap_figure(findings, clients=[LINK, "client-1"], title="Detector scores",
                                            start=NOW - timedelta(days=1), end=NOW)
    assert_no_planted_markup(figure)
    assert SHOWN in figure["data"][0]["y"] and SHOWN in figure["layout"]["yaxis"]["categoryarray"]


def test_audit_figures_escape_what_they_are_given():
    roc = audit_charts.roc_figure([{"name": LINK, "auc": 0.7, "roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}}],
                                  title=f"ROC of {LINK}")
    assert_no_planted_markup(roc)
    history = audit_charts.metric_history_figure(times=[NOW], values=[0.1], lows=[None], highs=[None], limit=0.2,
                                                 title=LINK, axis=LINK)
    assert_no_planted_markup(history)
    interval = {"value": 0.1, "low": 0.05, "high": 0.2}
    candidate = {"kind": "regularised", "setting": {LINK: LINK}, "accuracy": 0.8, "tpr_at_1pct_fpr": interval}
    scatter = audit_charts.privacy_utility_figure(
        {"current": {"accuracy": 0.82, "tpr_at_1pct_fpr": interval}, "candidates": [candidate], "recommended": 0},
        [{"policy": LINK, "accuracy": 0.8, "tpr_at_fpr": {"0.01": 0.05}}])
    assert_no_planted_markup(scatter)


def page_figures(html: str) -> dict[str, dict]:
    """The Plotly payloads of a page, as plotly.js parses them (json_script's \\u003C escapes undone)."""
    found = re.findall(r'<script id="([^"]+)" type="application/json">(.*?)</script>', html, re.DOTALL)
    return {name: json.loads(payload) for name, payload in found}


@pytest.mark.django_db
def test_pages_hand_plotly_no_planted_link(client, model):
    from monitor.alerts.lifecycle import raise_signal
    from monitor.ingestion.store import store_queries
    from monitor.ingestion.validate import QueryBatch
    from monitor.models import DetectorFinding
    from tests.factories import make_user, signal

    now = timezone.now()
    rows = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    store_queries(model, QueryBatch(client_ids=[LINK] * 20 + ["client-1"] * 20, timestamps=[now] * 40, features=rows,
                                    outputs=np.full((40, 2), 0.5, dtype=np.float32), request_ids=[None] * 40))
    alert, _ = raise_signal(signal(model=model, client_id=LINK, severity="critical"))
    model.alerts.filter(pk=alert.pk).update(title=LINK)
    DetectorFinding.objects.create(model=model, detector="volume", client_id=LINK, score=9.0, severity="critical",
                                   range_start=0, range_end=40, created_at=now)
    client.force_login(make_user(role="admin"))
    pages = {"overview": reverse("overview"), "model": reverse("model-detail", kwargs={"slug": model.slug}),
             "client": reverse("client-detail", kwargs={"slug": model.slug}) + "?" + urlencode({"id": LINK})}
    expected = {"overview": {"figure-alert-timeline"}, "model": {"figure-volume", "figure-heatmap"},
                "client": {"figure-timeline", "figure-projection"}}
    for page, address in pages.items():
        response = client.get(address)
        assert response.status_code == 200, (page, response.content[:300])
        figures = page_figures(response.content.decode())
        assert expected[page] <= set(figures), (page, sorted(figures))
        for name, figure in figures.items():
            assert_no_planted_markup(figure)
            if name in expected[page]:
                assert any(SHOWN in s for s in strings(figure)), (page, name)
