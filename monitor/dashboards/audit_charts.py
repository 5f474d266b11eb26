"""Pure functions: audit results in, Plotly figure dicts out."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.dashboards.charts import PALETTE, figure

ROC_FLOOR = 1e-4  # log axes need a floor; FPR 0 is drawn there


def roc_figure(attacks: Sequence[dict], *, title: str = "ROC per attack (log–log)") -> dict:
    """One curve per attack on log–log axes, where the low-FPR region that matters is visible."""
    traces = []
    for index, attack in enumerate(attacks):
        roc = attack.get("roc") or {}
        points = [(max(f, ROC_FLOOR), max(t, ROC_FLOOR)) for f, t in zip(roc.get("fpr") or [], roc.get("tpr") or [], strict=False)]
        if points:
            traces.append({"type": "scatter", "mode": "lines", "x": [p[0] for p in points], "y": [p[1] for p in points],
                           "name": f"{attack['name']} (AUC {attack.get('auc', 0):.3f})",
                           "line": {"color": PALETTE[index % (len(PALETTE) - 1)]}})
    traces.append({"type": "scatter", "mode": "lines", "x": [ROC_FLOOR, 1], "y": [ROC_FLOOR, 1], "name": "chance",
                   "line": {"color": "#9ca3af", "dash": "dot"}})
    return figure(traces, title=title, height=420, margin={"l": 60, "r": 20, "t": 40, "b": 50},
                  xaxis={"type": "log", "title": {"text": "false positive rate"}, "range": [-4, 0]},
                  yaxis={"type": "log", "title": {"text": "true positive rate"}, "range": [-4, 0]},
                  legend={"orientation": "h", "y": -0.25})


def metric_history_figure(*, times: Sequence[datetime], values: Sequence[float | None], lows: Sequence[float | None],
                          highs: Sequence[float | None], limit: float | None, title: str, axis: str,
                          percent: bool = True) -> dict:
    """A metric over audit runs with its confidence band and the policy limit."""
    traces = []
    if any(v is not None for v in lows):
        traces.append({"type": "scatter", "mode": "lines", "x": list(times) + list(times)[::-1],
                       "y": list(highs) + list(lows)[::-1], "fill": "toself", "fillcolor": "rgba(37,99,235,0.15)",
                       "line": {"width": 0}, "name": "95 % interval", "hoverinfo": "skip"})
    traces.append({"type": "scatter", "mode": "lines+markers", "x": list(times), "y": list(values), "name": axis,
                   "line": {"color": PALETTE[0]}})
    if limit is not None and times:
        traces.append({"type": "scatter", "mode": "lines", "x": [times[0], times[-1]], "y": [limit, limit],
                       "name": "policy limit", "line": {"color": PALETTE[1], "dash": "dash"}})
    xaxis: dict = {}
    if times and max(times) - min(times) < timedelta(hours=1):
        # One audit (or a burst of them): show a day around it, not milliseconds.
        xaxis = {"range": [min(times) - timedelta(hours=12), max(times) + timedelta(hours=12)]}
    return figure(traces, title=title, height=300, margin={"l": 60, "r": 20, "t": 40, "b": 40}, xaxis=xaxis,
                  yaxis={"title": {"text": axis}, "tickformat": ".1%" if percent else "", "rangemode": "tozero"},
                  legend={"orientation": "h", "y": -0.25})
