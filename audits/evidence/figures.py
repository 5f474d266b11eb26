"""The report's figures as static SVG data: URIs (matplotlib, text kept as text), so the PDF needs no network
and the same data draws the same bytes."""
from __future__ import annotations

import base64
import io
from typing import Any

PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"]


def _svg_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure_style() -> dict:
    return {"svg.fonttype": "none", "svg.hashsalt": "evidence", "font.family": "DejaVu Sans", "font.size": 9,
            "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb",
            "grid.linewidth": 0.6}


def roc_svg(attacks: list[dict]) -> str:
    """ROC per attack, log–log (the low-FPR region that matters) beside linear; static SVG from matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from audits.attacks.metrics import ROC_FLOOR

    with matplotlib.rc_context(_figure_style()):
        figure = Figure(figsize=(10, 4.4))
        log_axes, linear_axes = figure.subplots(1, 2)
        for index, attack in enumerate(attacks):
            roc = attack.get("roc") or {}
            fpr, tpr = roc.get("fpr") or [], roc.get("tpr") or []
            if not fpr:
                continue
            color = PALETTE[index % len(PALETTE)]
            label = f"{attack['name']} (AUC {attack.get('auc') or 0:.3f})"
            log_axes.plot([max(f, ROC_FLOOR) for f in fpr], [max(t, ROC_FLOOR) for t in tpr], color=color, lw=1.4,
                          label=label)
            linear_axes.plot(fpr, tpr, color=color, lw=1.4, label=label)
        for axes, floor in ((log_axes, ROC_FLOOR), (linear_axes, 0.0)):
            axes.plot([floor, 1], [floor, 1], color="#9ca3af", ls=":", lw=1, label="chance")
            axes.set_xlabel("false positive rate")
            axes.set_ylabel("true positive rate")
        log_axes.set_xscale("log")
        log_axes.set_yscale("log")
        log_axes.set_xlim(ROC_FLOOR, 1)
        log_axes.set_ylim(ROC_FLOOR, 1)
        for fpr in (0.001, 0.01, 0.1):
            log_axes.axvline(fpr, color="#6b7280", lw=0.6, ls="--")
        log_axes.set_title("log–log: low false-positive rates", fontsize=9.5)
        linear_axes.set_xlim(0, 1)
        linear_axes.set_ylim(0, 1)
        linear_axes.set_title("linear", fontsize=9.5)
        linear_axes.legend(loc="lower right", fontsize=7.5, frameon=False)
        figure.tight_layout()
        return _svg_data_uri(figure)


def trend_svg(runs: list[dict], policy: dict) -> str:
    """TPR at 1 % FPR over the period's finished runs, with 95 % intervals and the policy limit."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    points = []
    for run in runs:
        rate = ((run.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
        if rate.get("value") is not None:
            points.append((run["id"], rate["value"], rate.get("low") or rate["value"], rate.get("high") or rate["value"]))
    with matplotlib.rc_context(_figure_style()):
        figure = Figure(figsize=(10, 3))
        axes = figure.subplots()
        x = list(range(len(points)))
        axes.errorbar(x, [p[1] * 100 for p in points], yerr=[[(p[1] - p[2]) * 100 for p in points],
                                                               [(p[3] - p[1]) * 100 for p in points]],
                      fmt="o-", color=PALETTE[0], capsize=3, lw=1.2, label="TPR at 1 % FPR (95 % interval)")
        limit = (policy.get("limits") or {}).get("tpr_at_1pct_fpr")
        if limit is not None:
            axes.axhline(limit * 100, color=PALETTE[1], ls="--", lw=1, label="policy limit")
        axes.set_xticks(x, [f"audit {p[0]}" for p in points])
        axes.set_xlim(-0.5, len(points) - 0.5)
        axes.set_ylabel("TPR at 1 % FPR (%)")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7.5, frameon=False)
        figure.tight_layout()
        return _svg_data_uri(figure)
