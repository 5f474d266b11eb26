"""Pure functions: rows of numbers in, Plotly figure dicts out (no Django, no database).

Figures are plain dicts in Plotly's JSON schema: plotly.graph_objects validates every property in
Python and cost a model page ~100 ms; plotly.js checks the same schema in the browser anyway.

Plotly draws a subset of HTML (<a href>, <b>, <br>, ...) in titles, trace names, texts and tick labels, so every
string that comes from outside (client ids, alert titles, model names, settings) goes in through `plotly_text`.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#9ca3af"]
SEVERITY_COLOURS = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}


def plotly_text(value: object) -> str:
    """`value` as text Plotly shows and never follows: < > & escaped (Plotly turns the entities back into the
    characters on screen), so a client id such as <a href=...> reads as sent instead of becoming a link."""
    return html.escape(str(value), quote=False)


def figure(traces: list[dict], *, title: str = "", height: int = 320, **layout: Any) -> dict:
    """The house layout around `traces`; the title is escaped here (callers put client ids in it)."""
    base = {"title": {"text": plotly_text(title), "x": 0.02}, "height": height,
            "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
            "template": {"layout": {"paper_bgcolor": "white", "plot_bgcolor": "white",
                                    "xaxis": {"gridcolor": "#eef0f3", "zeroline": False, "automargin": True},
                                    "yaxis": {"gridcolor": "#eef0f3", "zeroline": False, "automargin": True},
                                    "font": {"family": "system-ui, sans-serif", "size": 12}}},
            "legend": {"orientation": "h", "y": -0.2}}
    base.update(layout)
    return {"data": traces, "layout": base}


def _list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def query_volume_figure(*, series: dict[str, tuple[Sequence[datetime], Sequence[int]]], title: str) -> dict:
    """Stacked query counts per time bucket, one trace per client (or 'other clients')."""
    traces = [{"type": "bar", "x": list(times), "y": list(counts), "name": plotly_text(client),
               "marker": {"color": PALETTE[min(index, len(PALETTE) - 1)]}}
              for index, (client, (times, counts)) in enumerate(series.items())]
    return figure(traces, title=title, barmode="stack", yaxis={"title": {"text": "queries"}})


def client_timeline_figure(*, minutes: Sequence[datetime], counts: Sequence[int], confidence: Sequence[float],
                           title: str) -> dict:
    """Queries per minute (bars) and mean top-1 confidence (line) for one client."""
    traces = [
        {"type": "bar", "x": list(minutes), "y": list(counts), "name": "queries / minute", "marker": {"color": PALETTE[0]}},
        {"type": "scatter", "mode": "lines", "x": list(minutes), "y": list(confidence), "name": "mean top-1 confidence",
         "yaxis": "y2", "line": {"color": PALETTE[3]}},
    ]
    return figure(traces, title=title, yaxis={"title": {"text": "queries"}},
                  yaxis2={"title": {"text": "confidence"}, "overlaying": "y", "side": "right", "range": [0, 1]})


def projection_figure(*, production: Any, client: Any, explained: tuple[float, float], client_id: str,
                      member_density: Any = None) -> dict:
    """The client's queries over production traffic on the first two principal components.

    Members appear only as a density contour (cells with few members blanked), never as points.
    """
    traces = []
    if member_density is not None:
        x_edges, y_edges, counts = member_density
        traces.append({"type": "contour", "x": _list((x_edges[:-1] + x_edges[1:]) / 2),
                       "y": _list((y_edges[:-1] + y_edges[1:]) / 2), "z": _list(counts.T), "name": "member density",
                       "showscale": False, "colorscale": "Greens", "opacity": 0.6, "hoverinfo": "skip",
                       "contours": {"coloring": "fill", "showlines": False}})
    traces.append({"type": "scatter", "mode": "markers", "x": _list(production[:, 0]), "y": _list(production[:, 1]),
                   "name": "production traffic", "marker": {"size": 4, "color": PALETTE[6], "opacity": 0.5}})
    traces.append({"type": "scatter", "mode": "markers", "x": _list(client[:, 0]), "y": _list(client[:, 1]),
                   "name": plotly_text(client_id), "marker": {"size": 6, "color": PALETTE[1], "opacity": 0.8}})
    return figure(traces, title="Queries on the first two principal components of production traffic", height=420,
                  xaxis={"title": {"text": f"PC1 ({explained[0]:.0%} of variance)"}},
                  yaxis={"title": {"text": f"PC2 ({explained[1]:.0%})"}})


def sparkline_figure(*, times: Sequence[datetime], values: Sequence[float | None], limit: float | None) -> dict:
    """A tiny TPR@1%FPR trend for the overview table (no axes, the limit as a dotted line)."""
    traces = [{"type": "scatter", "mode": "lines+markers", "x": list(times), "y": list(values),
               "line": {"color": PALETTE[0], "width": 2}, "marker": {"size": 4}, "hovertemplate": "%{y:.1%}<extra></extra>"}]
    if limit is not None and times:
        traces.append({"type": "scatter", "mode": "lines", "x": [times[0], times[-1]], "y": [limit, limit],
                       "hoverinfo": "skip", "line": {"color": PALETTE[1], "dash": "dot", "width": 1}})
    return figure(traces, height=48, width=180, margin={"l": 0, "r": 0, "t": 2, "b": 2}, showlegend=False,
                  xaxis={"visible": False}, yaxis={"visible": False, "rangemode": "tozero"})


def alert_timeline_figure(alerts: Sequence, *, title: str, start: datetime, end: datetime) -> dict:
    """Alerts across models over time, one row per model, coloured by severity."""
    traces = []
    for severity in ("info", "warning", "critical"):
        chosen = [a for a in alerts if a.severity == severity]
        if chosen:
            traces.append({
                "type": "scatter", "mode": "markers", "name": severity, "x": [a.first_seen for a in chosen],
                "y": [plotly_text(a.model.slug) for a in chosen],
                "marker": {"color": SEVERITY_COLOURS[severity], "size": 10, "symbol": "diamond"},
                "text": [f"{plotly_text(a.title or a.kind)}<br>{plotly_text(a.client_id or 'model-level')} · "
                         f"{plotly_text(a.status)}" for a in chosen],
                "hovertemplate": "%{text}<br>%{x}<extra></extra>"})
    return figure(traces, title=title, height=260, yaxis={"type": "category"}, xaxis={"range": [start, end]})


def detector_heatmap_figure(findings: Sequence[dict], *, clients: Sequence[str], title: str, start: datetime,
                            end: datetime) -> dict:
    """Clients × hours: the strongest detector score per cell, drawn as coloured tiles on the period's axis."""
    cells: dict[tuple[str, datetime], float] = {}
    for f in findings:
        key = (plotly_text(f["client_id"]), f["created_at"].replace(minute=0, second=0, microsecond=0))
        cells[key] = max(cells.get(key, 0.0), f["score"])
    trace = {"type": "scatter", "mode": "markers", "x": [hour for _, hour in cells], "y": [client for client, _ in cells],
             "marker": {"symbol": "square", "size": 16, "color": list(cells.values()), "colorscale": "OrRd", "cmin": 0,
                        "showscale": True, "colorbar": {"title": {"text": "score"}}},
             "hovertemplate": "%{y}<br>%{x}<br>score %{marker.color:.1f}<extra></extra>"}
    return figure([trace], title=title, height=max(220, 60 + 26 * len(clients)),
                  yaxis={"type": "category", "categoryorder": "array",
                         "categoryarray": [plotly_text(client) for client in clients][::-1]},
                  xaxis={"range": [start, end]})
