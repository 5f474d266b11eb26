"""The gate's reports for a CI (PURE, standard library only): JUnit XML, SARIF 2.1.0, a Markdown summary for a
pull-request comment, and JSON, each from the report dict `audits.gate.GateOutcome.report()` makes.

JUnit: one test case per FPR target (the paired comparison) and per policy limit; figures in each case's system-out; a failed
comparison or breached limit is a <failure>, a comparison worse within noise passes with a `warning` property.
SARIF: one result per failed or warned comparison and per breached limit, at level error / warning, each with a
stable fingerprint (model, rule, target: not the figures) so a code-scanning UI tracks it across runs.
"""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET  # noqa: S405 (we write XML, never parse untrusted XML here)
from typing import Any
from urllib.parse import quote

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = "membership-inference-monitor gate"
RULES = {
    "MIA-GATE-LEAKAGE": "The candidate leaks more than the production model (paired test on the same records)",
    "MIA-GATE-LIMIT": "The candidate breaks an absolute limit of the model's audit policy",
    "MIA-GATE-UNDECIDED": "The audits were too weak to decide",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def junit_xml(report: dict[str, Any]) -> str:
    cases = []
    for c in report["comparisons"]:
        name = f"leakage at {c['fpr']:.1%} FPR: candidate vs production"
        failure = c["significant"]
        cases.append((name, failure, {
            "fpr": c["fpr"], "production_tpr": c["production"], "candidate_tpr": c["candidate"],
            "difference": c["difference"], "lower_bound": c["lower"], "upper_bound": c["upper"],
            "p_value": c["p_value"], "production_attack": c["production_attack"],
            "candidate_attack": c["candidate_attack"],
            **({"warning": "worse within noise"} if c["difference"] > 0 and not failure else {})},
            f"candidate TPR {_pct(c['candidate'])} vs production {_pct(c['production'])}, difference lower bound "
            f"{c['lower']:+.2%}"))
    for limit in report["limits"]:
        cases.append((f"policy limit {limit['metric']}", limit["breached"], limit,
                      f"{limit['metric']} {limit['value']} over the limit {limit['limit']}"))
    suite = ET.Element("testsuite", name=f"privacy gate: {report['model']}", tests=str(len(cases)),
                       failures=str(sum(1 for _, failed, _, _ in cases if failed)), errors="0",
                       skipped="1" if report["verdict"] == "undecided" else "0",
                       time=f"{report.get('seconds', 0):.1f}")
    properties = ET.SubElement(suite, "properties")
    for key in ("verdict", "exit_code", "model", "candidate_sha256", "alpha"):
        ET.SubElement(properties, "property", name=key, value=str(report[key]))
    for name, failed, figures, message in cases:
        case = ET.SubElement(suite, "testcase", classname=f"privacy_gate.{report['model']}", name=name)
        if failed:
            ET.SubElement(case, "failure", message=message, type="privacy_gate").text = message
        if report["verdict"] == "undecided":
            ET.SubElement(case, "skipped", message="; ".join(report["reasons"]))
        # junit-10.xsd (what Jenkins' xunit plugin validates against) has no <properties> in a testcase
        ET.SubElement(case, "system-out").text = "\n".join(f"{key} = {value}" for key, value in figures.items())
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def sarif(report: dict[str, Any]) -> str:
    # artifactLocation.uri is a URI reference: a file name with spaces or accents is percent-encoded
    location = [{"physicalLocation": {"artifactLocation": {"uri": quote(report.get("artifact_name") or "model")}}}]
    results = []
    for c in report["comparisons"]:
        if not c["significant"] and c["difference"] <= 0:
            continue
        level = "error" if c["significant"] else "warning"
        results.append({
            "ruleId": "MIA-GATE-LEAKAGE", "level": level, "locations": location,
            "message": {"text": f"At {c['fpr']:.1%} FPR the candidate's membership-inference TPR is "
                                f"{_pct(c['candidate'])} ({c['candidate_attack']}) against production's "
                                f"{_pct(c['production'])} ({c['production_attack']}); difference {c['difference']:+.2%}, "
                                f"lower bound {c['lower']:+.2%}" + ("" if c["significant"] else " (within noise)")},
            "partialFingerprints": {"miaGate/v1": _fingerprint(report["model"], "leakage", str(c["fpr"]))},
            "properties": {key: c[key] for key in ("fpr", "production", "candidate", "difference", "lower", "p_value")},
        })
    for limit in report["limits"]:
        if limit["breached"]:
            results.append({
                "ruleId": "MIA-GATE-LIMIT", "level": "error", "locations": location,
                "message": {"text": f"{limit['metric']} is {limit['value']}, over the policy's limit {limit['limit']}"},
                "partialFingerprints": {"miaGate/v1": _fingerprint(report["model"], "limit", limit["metric"])},
            })
    if report["verdict"] == "undecided":
        results.append({
            "ruleId": "MIA-GATE-UNDECIDED", "level": "note", "locations": location,
            "message": {"text": "; ".join(report["reasons"])},
            "partialFingerprints": {"miaGate/v1": _fingerprint(report["model"], "undecided")},
        })
    document = {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": TOOL, "informationUri": "https://owasp.org/www-project-machine-learning-security-top-10/",
                                      "rules": [{"id": rule, "shortDescription": {"text": text}}
                                                for rule, text in RULES.items()]}},
                  "results": results}],
    }
    return json.dumps(document, indent=2)


def markdown(report: dict[str, Any]) -> str:
    mark = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail", "undecided": "❔ undecided"}[report["verdict"]]
    lines = [f"### Privacy gate for `{report['model']}`: {mark}", "",
             f"Candidate `{report['candidate_sha256'][:12]}` against production v{report['production_version']}, "
             f"on the same {report['n_members']:,} members and {report['n_nonmembers']:,} non-members "
             f"(paired bootstrap, α = {report['alpha']}).", "",
             "| FPR | production TPR | candidate TPR | difference | lower bound | significant |",
             "|---|---|---|---|---|---|"]
    for c in report["comparisons"]:
        lines.append(f"| {c['fpr']:.1%} | {_pct(c['production'])} ({c['production_attack']}) | "
                     f"{_pct(c['candidate'])} ({c['candidate_attack']}) | {c['difference']:+.2%} | "
                     f"{c['lower']:+.2%} | {'yes' if c['significant'] else 'no'} |")
    if report["limits"]:
        lines += ["", "| policy limit | candidate | limit | breached |", "|---|---|---|---|"]
        lines += [f"| {limit['metric']} | {limit['value']} | {limit['limit']} | {'yes' if limit['breached'] else 'no'} |"
                  for limit in report["limits"]]
    lines += ["", *(f"- {reason}" for reason in report["reasons"])]
    return "\n".join(lines) + "\n"


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


# Every report by the name the CLI flag, the API and the page use: (writer, content type, file name).
REPORTS = {"junit": (junit_xml, "application/xml", "gate-junit.xml"),
           "sarif": (sarif, "application/sarif+json", "gate.sarif"),
           "summary": (markdown, "text/markdown; charset=utf-8", "gate-summary.md"),
           "json": (as_json, "application/json", "gate.json")}
