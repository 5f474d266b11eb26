"""Pure functions: audit results in, Plotly figure dicts out (strings through `charts.plotly_text`, as there)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from audits.attacks.metrics import ROC_FLOOR
from monitor.dashboards.charts import PALETTE, figure, plotly_text


def roc_figure(attacks: Sequence[dict], *, title: str = "ROC per attack (log–log)") -> dict:
    """One curve per attack on log–log axes, where the low-FPR region that matters is visible."""
    traces = []
    for index, attack in enumerate(attacks):
        roc = attack.get("roc") or {}
        points = [(max(f, ROC_FLOOR), max(t, ROC_FLOOR)) for f, t in zip(roc.get("fpr") or [], roc.get("tpr") or [], strict=False)]
        if points:
            traces.append({"type": "scatter", "mode": "lines", "x": [p[0] for p in points], "y": [p[1] for p in points],
                           "name": f"{plotly_text(attack['name'])} (AUC {attack.get('auc', 0):.3f})",
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
    traces.append({"type": "scatter", "mode": "lines+markers", "x": list(times), "y": list(values),
                   "name": plotly_text(axis), "line": {"color": PALETTE[0]}})
    if limit is not None and times:
        traces.append({"type": "scatter", "mode": "lines", "x": [times[0], times[-1]], "y": [limit, limit],
                       "name": "policy limit", "line": {"color": PALETTE[1], "dash": "dash"}})
    xaxis: dict = {}
    if times and max(times) - min(times) < timedelta(hours=1):
        # One audit (or a burst of them): show a day around it, not milliseconds.
        xaxis = {"range": [min(times) - timedelta(hours=12), max(times) + timedelta(hours=12)]}
    return figure(traces, title=title, height=300, margin={"l": 60, "r": 20, "t": 40, "b": 40}, xaxis=xaxis,
                  yaxis={"title": {"text": plotly_text(axis)}, "tickformat": ".1%" if percent else "",
                         "rangemode": "tozero"},
                  legend={"orientation": "h", "y": -0.25})


def setting_label(setting: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in setting.items()) or "today's model"


def privacy_utility_figure(remediation: dict, what_if: Sequence[dict]) -> dict:
    """Accuracy against TPR@1%FPR: today's model, each hardened candidate (training-side fixes) and each output
    policy (serving-side fixes) on one picture; lower and further right is better."""
    traces = []
    current = remediation.get("current") or {}
    candidates = remediation.get("candidates") or []
    recommended = remediation.get("recommended")
    for kind, name, symbol, colour in (("regularised", "hardened: regularised", "circle", PALETTE[0]),
                                       ("dp", "hardened: differentially private", "diamond", PALETTE[2])):
        shown = [c for c in candidates if c.get("kind") == kind and c.get("accuracy") is not None]
        if shown:
            traces.append({"type": "scatter", "mode": "markers", "name": name,
                           "x": [c["accuracy"] for c in shown],
                           "y": [(c["tpr_at_1pct_fpr"] or {}).get("value") for c in shown],
                           "text": [plotly_text(setting_label(c["setting"])) for c in shown],
                           "error_y": {"type": "data", "symmetric": False,
                                       "array": [(c["tpr_at_1pct_fpr"]["high"] - c["tpr_at_1pct_fpr"]["value"]) for c in shown],
                                       "arrayminus": [(c["tpr_at_1pct_fpr"]["value"] - c["tpr_at_1pct_fpr"]["low"]) for c in shown],
                                       "color": colour, "thickness": 1},
                           "hovertemplate": "%{text}<br>accuracy %{x:.2%}<br>TPR@1%FPR %{y:.2%}<extra></extra>",
                           "marker": {"symbol": symbol, "size": 10, "color": colour}})
    policies = [row for row in what_if if (row.get("tpr_at_fpr") or {}).get("0.01") is not None]
    if policies:
        traces.append({"type": "scatter", "mode": "markers+text", "name": "output policy (serving side)",
                       "x": [row["accuracy"] for row in policies], "y": [row["tpr_at_fpr"]["0.01"] for row in policies],
                       "text": [plotly_text(row["policy"]) for row in policies], "textposition": "top center",
                       "hovertemplate": "output %{text}<br>accuracy %{x:.2%}<br>TPR@1%FPR %{y:.2%}<extra></extra>",
                       "marker": {"symbol": "square", "size": 9, "color": PALETTE[3]}})
    if recommended is not None and recommended < len(candidates):
        best = candidates[recommended]
        traces.append({"type": "scatter", "mode": "markers", "name": "recommended",
                       "x": [best["accuracy"]], "y": [best["tpr_at_1pct_fpr"]["value"]],
                       "text": [plotly_text(setting_label(best["setting"]))],
                       "hovertemplate": "recommended: %{text}<extra></extra>",
                       "marker": {"symbol": "circle-open", "size": 20, "color": "#16a34a", "line": {"width": 3}}})
    if current.get("accuracy") is not None:
        traces.append({"type": "scatter", "mode": "markers", "name": "today's model",
                       "x": [current["accuracy"]], "y": [(current.get("tpr_at_1pct_fpr") or {}).get("value")],
                       "hovertemplate": "today's model<br>accuracy %{x:.2%}<br>TPR@1%FPR %{y:.2%}<extra></extra>",
                       "marker": {"symbol": "star", "size": 16, "color": PALETTE[1]}})
    xs = [t for trace in traces for t in trace["x"] if t is not None]
    if xs:
        traces.append({"type": "scatter", "mode": "lines", "name": "chance (1 %)", "x": [min(xs), max(xs)],
                       "y": [0.01, 0.01], "line": {"color": "#9ca3af", "dash": "dot"}, "hoverinfo": "skip"})
    return figure(traces, title="Privacy against utility: lower is less leakage, right is more accurate", height=440,
                  margin={"l": 60, "r": 20, "t": 40, "b": 50},
                  xaxis={"title": {"text": "accuracy on held-out non-members"}, "tickformat": ".1%"},
                  yaxis={"title": {"text": "TPR at 1 % FPR (strongest attack)"}, "tickformat": ".1%", "rangemode": "tozero"},
                  legend={"orientation": "h", "y": -0.25})
