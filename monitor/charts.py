"""Pure functions: rows of numbers in, Plotly figure dicts out (no Django, no database)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import plotly.graph_objects as go

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#9ca3af"]


def query_volume_figure(*, series: dict[str, tuple[Sequence[datetime], Sequence[int]]], title: str) -> dict:
    """Stacked query counts per time bucket, one trace per client (or 'other clients')."""
    figure = go.Figure()
    for index, (client, (times, counts)) in enumerate(series.items()):
        figure.add_trace(go.Bar(x=list(times), y=list(counts), name=client,
                                marker_color=PALETTE[min(index, len(PALETTE) - 1)]))
    figure.update_layout(
        barmode="stack", title=title, height=320, margin={"l": 50, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.2}, yaxis_title="queries", template="plotly_white",
    )
    return json.loads(figure.to_json())


def _layout(figure: go.Figure, *, title: str, height: int = 320, **extra: object) -> None:
    figure.update_layout(title=title, height=height, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                         template="plotly_white", legend={"orientation": "h", "y": -0.2}, **extra)


def client_timeline_figure(*, minutes: Sequence[datetime], counts: Sequence[int], confidence: Sequence[float],
                           title: str) -> dict:
    """Queries per minute (bars) and mean top-1 confidence (line) for one client."""
    figure = go.Figure()
    figure.add_trace(go.Bar(x=list(minutes), y=list(counts), name="queries / minute", marker_color=PALETTE[0]))
    figure.add_trace(go.Scatter(x=list(minutes), y=list(confidence), name="mean top-1 confidence", yaxis="y2",
                                mode="lines", line={"color": PALETTE[3]}))
    _layout(figure, title=title, yaxis={"title": "queries"},
            yaxis2={"title": "confidence", "overlaying": "y", "side": "right", "range": [0, 1]})
    return json.loads(figure.to_json())


def projection_figure(*, production, client, explained: tuple[float, float], client_id: str,
                      member_density=None) -> dict:
    """The client's queries over production traffic on the first two principal components.

    Members appear only as a density contour (cells with few members blanked), never as points.
    """
    figure = go.Figure()
    if member_density is not None:
        x_edges, y_edges, counts = member_density
        figure.add_trace(go.Contour(
            x=((x_edges[:-1] + x_edges[1:]) / 2).tolist(), y=((y_edges[:-1] + y_edges[1:]) / 2).tolist(),
            z=counts.T.tolist(), name="member density", showscale=False, colorscale="Greens", opacity=0.6,
            contours={"coloring": "fill", "showlines": False}, hoverinfo="skip"))
    figure.add_trace(go.Scatter(x=production[:, 0].tolist(), y=production[:, 1].tolist(), mode="markers",
                                  name="production traffic", marker={"size": 4, "color": PALETTE[6], "opacity": 0.5}))
    figure.add_trace(go.Scatter(x=client[:, 0].tolist(), y=client[:, 1].tolist(), mode="markers", name=client_id,
                                  marker={"size": 6, "color": PALETTE[1], "opacity": 0.8}))
    _layout(figure, title="Queries on the first two principal components of production traffic", height=420,
            xaxis={"title": f"PC1 ({explained[0]:.0%} of variance)"}, yaxis={"title": f"PC2 ({explained[1]:.0%})"})
    return json.loads(figure.to_json())


SEVERITY_COLOURS = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}


def sparkline_figure(*, times: Sequence[datetime], values: Sequence[float | None], limit: float | None) -> dict:
    """A tiny TPR@1%FPR trend for the overview table (no axes, the limit as a dotted line)."""
    figure = go.Figure(go.Scatter(x=list(times), y=list(values), mode="lines+markers", line={"color": PALETTE[0], "width": 2},
                                  marker={"size": 4}, hovertemplate="%{y:.1%}<extra></extra>"))
    if limit is not None and times:
        figure.add_trace(go.Scatter(x=[times[0], times[-1]], y=[limit, limit], mode="lines", hoverinfo="skip",
                                    line={"color": PALETTE[1], "dash": "dot", "width": 1}))
    figure.update_layout(height=48, width=180, margin={"l": 0, "r": 0, "t": 2, "b": 2}, showlegend=False,
                         xaxis={"visible": False}, yaxis={"visible": False, "rangemode": "tozero"}, template="plotly_white")
    return json.loads(figure.to_json())


def alert_timeline_figure(alerts: Sequence, *, title: str, start: datetime, end: datetime) -> dict:
    """Alerts across models over time, one row per model, coloured by severity."""
    figure = go.Figure()
    for severity in ("info", "warning", "critical"):
        chosen = [a for a in alerts if a.severity == severity]
        if not chosen:
            continue
        figure.add_trace(go.Scatter(
            x=[a.first_seen for a in chosen], y=[a.model.slug for a in chosen], mode="markers", name=severity,
            marker={"color": SEVERITY_COLOURS[severity], "size": 10, "symbol": "diamond"},
            text=[f"{a.title or a.kind}<br>{a.client_id or 'model-level'} · {a.status}" for a in chosen],
            hovertemplate="%{text}<br>%{x}<extra></extra>"))
    _layout(figure, title=title, height=260, yaxis={"type": "category"}, xaxis={"range": [start, end]})
    return json.loads(figure.to_json())


def detector_heatmap_figure(findings: Sequence[dict], *, clients: Sequence[str], title: str, start: datetime,
                            end: datetime) -> dict:
    """Clients × hours: the strongest detector score per cell, drawn as coloured tiles on the period's axis."""
    cells: dict[tuple[str, datetime], float] = {}
    for f in findings:
        key = (f["client_id"], f["created_at"].replace(minute=0, second=0, microsecond=0))
        cells[key] = max(cells.get(key, 0.0), f["score"])
    figure = go.Figure(go.Scatter(
        x=[hour for _, hour in cells], y=[client for client, _ in cells], mode="markers",
        marker={"symbol": "square", "size": 16, "color": list(cells.values()), "colorscale": "OrRd", "cmin": 0,
                "showscale": True, "colorbar": {"title": "score"}},
        hovertemplate="%{y}<br>%{x}<br>score %{marker.color:.1f}<extra></extra>"))
    _layout(figure, title=title, height=max(220, 60 + 26 * len(clients)),
            yaxis={"type": "category", "categoryorder": "array", "categoryarray": list(clients)[::-1]},
            xaxis={"range": [start, end]})
    return json.loads(figure.to_json())
