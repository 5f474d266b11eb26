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
