"""The evidence report: the view-model of audit.json for people (audits/report.html) and its HTML and PDF.

It reads only the serialised document, never the database, so the report says exactly what audit.json says.
"""
from __future__ import annotations

import logging
from typing import Any

from django.template.loader import render_to_string

from audits.attacks.catalogue import ATTACK_LABELS, attack_class
from audits.attacks.verdict import VerdictState
from audits.evidence.figures import roc_svg, trend_svg
from audits.evidence.format import FPRS, ControlStatus
from audits.models import RunStatus, verdict_of
from monitor.alerts.evidence_text import evidence_lines

MAX_LOG_ROWS_IN_REPORT = 80

ATTACK_NOTES = {
    "loss": "Scores each record by the model's loss on it; members have lower loss. No reference models.",
    "confidence": "Scores by the model's confidence in the true label. No reference models.",
    "modified_entropy": "Entropy of the output, modified to use the true label. No reference models.",
    "lira_offline": "Likelihood ratio against a Gaussian fit of OUT reference models per record.",
    "lira_online": "Likelihood ratio between IN and OUT reference-model distributions per record.",
    "rmia": "Likelihood ratio of the record against population samples z, with reference models.",
    "label_only": "Robustness of the predicted label to noise around the record; for label-only outputs.",
}

def attack_note(name: str) -> str:
    """The report's sentence on an attack: its own above, else the catalogue's (every attack has one)."""
    if name in ATTACK_NOTES:
        return ATTACK_NOTES[name]
    try:
        return attack_class(name).note
    except KeyError:  # an attack a newer release removed, in an old run
        return ""


def report_html(document: dict, log_lines: list[dict], *, annex: dict, candidates: list[dict]) -> str:
    """report.html, self-contained: styles inline, figures as data: URIs."""
    return render_to_string("audits/report.html",
                            report_context(document, log_lines, annex=annex, candidates=candidates))


def report_pdf(html: str) -> bytes:
    # WeasyPrint logs every layout step at INFO; one export would put a dozen lines in the worker's log.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # The figures are data: URIs; nothing else may be fetched, from the network or the disk.
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=["data"])).write_pdf()


def _pct(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(rate: dict | None) -> str:
    if not rate or rate.get("low") is None:
        return "–"
    return f"[{_pct(rate['low'])}, {_pct(rate['high'])}]"


def _rate_cells(rates: dict | None) -> list[dict]:
    return [{"value": _pct((rates or {}).get(f, {}).get("value")), "interval": _interval((rates or {}).get(f)),
             "reliable": (rates or {}).get(f, {}).get("reliable")} for f in FPRS]


def report_context(document: dict, log_lines: list[dict], *, annex: dict, candidates: list[dict]) -> dict:
    """What audits/report.html shows: every run in a table, the latest finished one (else the latest) in detail, the
    privacy gate's candidates (candidates.json) and the controls annex (controls.json) framework by framework."""
    runs = document["runs"]
    finished = [r for r in runs if r["status"] == RunStatus.DONE]
    main = finished[-1] if finished else (runs[-1] if runs else None)
    model = document["model"]
    context: dict[str, Any] = {
        "export": document["export"], "model": model, "policy": document["policy"], "chain": document["audit_log"],
        "software": document["software"], "annex": annex_view(annex), "candidates": candidates,
        "fpr_labels": ["0.1 %", "1 %", "10 %"], "run": None, "runs": [_run_row(r) for r in runs],
        "alerts": [_alert_view(a) for a in document["alerts"]],
        "log_rows": [_log_view(line) for line in log_lines[-MAX_LOG_ROWS_IN_REPORT:]],
        "log_hidden": max(0, len(log_lines) - MAX_LOG_ROWS_IN_REPORT),
        "log_actions": _count_by(log_lines, "action"),
        "trend_svg": trend_svg(finished, document["policy"]) if len(finished) > 1 else None,
    }
    if main is not None:
        context["run"] = _run_view(main, model)
    return context


VERDICT_TEXT = {VerdictState.PASSED: "within policy", VerdictState.BREACHED: "breached",
                VerdictState.INCONCLUSIVE: "inconclusive — weak audit"}


def _run_row(run: dict) -> dict:
    headline = run.get("headline") or {}
    rate = (headline.get("tpr_at_fpr") or {}).get("0.01") or {}
    verdict = run.get("policy") or {}
    return {"id": run["id"], "status": run["status"], "trigger": run["trigger"], "created_at": run["created_at"],
            "finished_at": run["finished_at"], "tpr": _pct(rate.get("value")), "interval": _interval(rate),
            "auc": _num(headline.get("auc")), "epsilon": _num(headline.get("epsilon_lower"), 2),
            "verdict": "" if run["status"] != RunStatus.DONE else VERDICT_TEXT[verdict_of(verdict) or VerdictState.BREACHED],
            "passed": verdict.get("passed"), "error": run.get("error")}


def _run_view(run: dict, model: dict) -> dict:
    headline = run.get("headline") or {}
    config = run.get("config") or {}
    attack_config = run.get("attack_config") or {}
    attacks = run.get("attacks") or []
    # Named by AuditRun.leading_attack() when the bundle was gathered: the one rule every page uses.
    lead = next((a for a in attacks if a["name"] == run.get("leading_attack")), None)
    classes = model.get("class_labels") or []
    verdict = run.get("policy") or {}
    return {
        "id": run["id"], "status": run["status"], "trigger": run["trigger"], "error": run.get("error"),
        "requested_by": run.get("requested_by"), "created_at": run["created_at"], "started_at": run["started_at"],
        "finished_at": run["finished_at"], "model_version": run.get("model_version"),
        "artifact_sha256": run.get("artifact_sha256"), "data_sha256": sorted((run.get("data_sha256") or {}).items()),
        "config": config, "attack_config": attack_config, "environment": run.get("environment") or {},
        "limits": config.get("limits") or {},
        "verdict": {"passed": verdict.get("passed"), "state": verdict_of(verdict), "weak_audit": verdict.get("weak_audit") or [],
                    "regression": verdict.get("regression"),
                    "breaches": [{"metric": b["metric"], "value": _num(b["value"], 4), "limit": _num(b["limit"], 4),
                                  "attack": b.get("attack")} for b in verdict.get("breaches") or []]},
        "headline": {
            "rates": [{"fpr": label, **cell, "attack": (headline.get("tpr_at_fpr") or {}).get(f, {}).get("attack")}
                      for label, f, cell in zip(["0.1 %", "1 %", "10 %"], FPRS, _rate_cells(headline.get("tpr_at_fpr")),
                                                strict=True)],
            "auc": _num(headline.get("auc")), "auc_attack": headline.get("auc_attack"),
            "epsilon": _num(headline.get("epsilon_lower"), 2), "epsilon_attack": headline.get("epsilon_attack"),
        } if headline else None,
        "attacks": [{"name": a["name"], "label": ATTACK_LABELS.get(a["name"], a["name"]), "auc": _num(a.get("auc")),
                     "advantage": _num(a.get("advantage")), "balanced_accuracy": _num(a.get("balanced_accuracy")),
                     "epsilon": _num(a.get("epsilon_lower"), 2), "rates": _rate_cells(a.get("tpr_at_fpr")),
                     "n": f"{a.get('n_members')} / {a.get('n_nonmembers')}", "note": attack_note(a["name"]),
                     "parameters": _attack_parameters(a, attack_config)} for a in attacks],
        "counts": sorted({(a.get("n_members"), a.get("n_nonmembers")) for a in attacks}, key=str),
        "roc_svg": roc_svg(attacks) if attacks else None,
        "what_if": [{"policy": w.get("policy"), "current": w.get("policy") == config.get("output_policy"),
                     "accuracy": _num(w.get("accuracy")), "drop": _num(w.get("accuracy_drop")),
                     "tpr": _pct((w.get("tpr_at_fpr") or {}).get("0.01")), "tpr_attack": w.get("tpr_attack"),
                     "auc": _num(w.get("auc"))} for w in run.get("what_if") or []],
        "per_class": {"attack": ATTACK_LABELS.get(lead["name"], lead["name"]), "rows": [
            {"label": classes[s["label"]] if isinstance(s.get("label"), int) and s["label"] < len(classes) else s.get("label"),
             "n_members": s.get("n_members"), "n_nonmembers": s.get("n_nonmembers"), "auc": _num(s.get("auc")),
             "tpr": _pct(((s.get("tpr_at_fpr") or {}).get("0.01") or {}).get("value"))}
            for s in lead.get("per_class") or []]} if lead else None,
        "exposed": {"attack": lead["name"], "ids": lead.get("top_exposed") or []} if lead else None,
        "recommendations": run.get("recommendations") or [], "notes": run.get("notes") or [],
        "accuracy": run.get("accuracy") or {},
    }


def _attack_parameters(attack: dict, attack_config: dict) -> str:
    name = attack["name"]
    details = attack.get("details") or {}
    if name.startswith("lira"):
        return (f"{details.get('n_out_models', attack_config.get('n_reference'))} reference models, "
                f"variance {details.get('variance', attack_config.get('lira_variance'))}, clip {details.get('clip', attack_config.get('clip'))}")
    if name.startswith("rmia"):
        return (f"γ = {details.get('gamma')}, a = {details.get('a')}, {details.get('n_population_z')} population samples z, "
                f"{attack_config.get('n_reference')} reference models")
    if name == "label_only":
        label = attack_config.get("label_only") or {}
        return f"{label.get('n_neighbours')} neighbours per record at radii {label.get('radii')}"
    return "no reference models"


STATUS_BADGE = {ControlStatus.MET: "ok", ControlStatus.NOT_MET: "bad"}


def annex_view(annex: dict) -> dict:
    """controls.json grouped by framework, each row with its badge's class."""
    rows: dict[str, list[dict]] = {}
    for row in annex["rows"]:
        rows.setdefault(row["framework"], []).append({**row, "badge": STATUS_BADGE.get(ControlStatus(row["status"]), "")})
    counts = {status: sum(1 for row in annex["rows"] if row["status"] == status) for status in annex["statuses"]}
    return {"rule": annex["rule"], "counts": counts,
            "frameworks": [{**framework, "rows": rows.get(framework["id"], [])} for framework in annex["frameworks"]]}


def _alert_view(alert: dict) -> dict:
    return {**alert, "evidence_lines": evidence_lines(alert.get("evidence"), kind=alert.get("kind"))}


def _log_view(line: dict) -> dict:
    return {"seq": line["seq"], "at": line["at"], "actor": line["actor"], "action": line["action"],
            "object": f"{line['object_type']}:{line['object_id']}" if line["object_type"] else "",
            "hash": line["hash"][:16]}


def _count_by(lines: list[dict], key: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line[key]] = counts.get(line[key], 0) + 1
    return sorted(counts.items())
