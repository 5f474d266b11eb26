"""The gate's reports are what CI tools take (issue 28): the SARIF validates against the OASIS SARIF 2.1.0 schema
and the JUnit XML against the Jenkins xunit plugin's junit-10.xsd, for every verdict; a SARIF finding keeps its
fingerprint when only its figures change, so code scanning tracks it across runs. The schemas are shipped under
tests/data/schemas/ (sources in its README). No database: the reports are written from a dict."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import numpy as np
import pytest
import xmlschema

from audits import gate_reports
from audits.attacks.gate import Comparison, decide
from audits.gate import GateOutcome

SCHEMAS = Path(__file__).resolve().parent.parent / "data" / "schemas"


@pytest.fixture(scope="module")
def sarif_schema() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(SCHEMAS / "junit-10.xsd")


def comparison(*, fpr: float, production: float, candidate: float, lower: float, p_value: float) -> Comparison:
    difference = candidate - production
    return Comparison(fpr=fpr, production=production, candidate=candidate, production_attack="rmia",
                      candidate_attack="lira_offline", difference=difference, lower=lower,
                      upper=difference + (difference - lower), p_value=p_value, significant=lower > 0)


def limit_rows(*, tpr: float, epsilon: float | None, tpr_limit: float = 0.05) -> list[dict[str, Any]]:
    """The rows audits.gate.run_gate writes: the TPR@1%FPR limit and the ε limit (None: the policy sets none)."""
    return [{"metric": "tpr_at_1pct_fpr", "value": tpr, "limit": tpr_limit, "breached": tpr > tpr_limit},
            {"metric": "epsilon_lower", "value": epsilon, "limit": None, "breached": False}]


def report(*, comparisons: list[Comparison], limits: list[dict[str, Any]], weak: tuple[str, ...] = (),
           slug: str = "credit", artifact_name: str = "candidate.skops") -> dict[str, Any]:
    """A report as the gate writes it: GateOutcome.report() itself, over stand-ins for the model and the audits."""
    breaches = [f"{row['metric']} {row['value']} > limit {row['limit']}" for row in limits if row["breached"]]
    result = decide(comparisons, alpha=0.05, n_bootstrap=1000, limit_breaches=breaches, weak=weak)
    production = SimpleNamespace(record_keys=(np.arange(600), np.arange(600, 1200)))
    outcome = GateOutcome(model=SimpleNamespace(slug=slug, version=3), candidate_sha256="ab" * 32,
                          artifact_name=artifact_name, production=production, candidate=production,  # type: ignore[arg-type]
                          result=result, limits=limits, seconds=184.26, shared_references=True)
    return outcome.report()


def passing() -> dict[str, Any]:
    return report(comparisons=[comparison(fpr=0.01, production=0.031, candidate=0.024, lower=-0.031, p_value=0.91),
                               comparison(fpr=0.001, production=0.004, candidate=0.004, lower=-0.006, p_value=0.62)],
                  limits=limit_rows(tpr=0.024, epsilon=0.41))


def warning() -> dict[str, Any]:
    return report(comparisons=[comparison(fpr=0.01, production=0.031, candidate=0.038, lower=-0.004, p_value=0.17),
                               comparison(fpr=0.001, production=0.004, candidate=0.004, lower=-0.006, p_value=0.62)],
                  limits=limit_rows(tpr=0.038, epsilon=0.52))


def failing(*, candidate: float = 0.142, lower: float = 0.071) -> dict[str, Any]:
    """Leaks more with confidence at 1 % FPR and breaks the policy's TPR@1%FPR limit."""
    return report(comparisons=[comparison(fpr=0.01, production=0.031, candidate=candidate, lower=lower, p_value=0.0),
                               comparison(fpr=0.001, production=0.004, candidate=0.021, lower=0.003, p_value=0.01)],
                  limits=limit_rows(tpr=candidate, epsilon=2.17))


def undecided() -> dict[str, Any]:
    return report(comparisons=[comparison(fpr=0.01, production=0.0, candidate=0.0, lower=0.0, p_value=1.0),
                               comparison(fpr=0.001, production=0.0, candidate=0.0, lower=0.0, p_value=1.0)],
                  limits=limit_rows(tpr=0.0, epsilon=None),
                  weak=("the reference attacks could not run: 30 non-members and no population",))


REPORTS = {"pass": passing, "warn": warning, "fail": failing, "undecided": undecided}


def test_the_stand_in_reports_reach_each_verdict():
    assert {verdict: make()["verdict"] for verdict, make in REPORTS.items()} == {v: v for v in REPORTS}
    assert [limit["breached"] for limit in failing()["limits"]] == [True, False]


@pytest.mark.parametrize("verdict", REPORTS)
def test_the_sarif_validates_against_the_oasis_sarif_2_1_0_schema(verdict, sarif_schema):
    document = json.loads(gate_reports.sarif(REPORTS[verdict]()))
    problems = [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
                for error in sarif_schema.iter_errors(document)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("verdict", REPORTS)
def test_the_junit_xml_validates_against_the_jenkins_junit_10_xsd(verdict, junit_schema):
    text = gate_reports.junit_xml(REPORTS[verdict]())
    problems = [f"{error.path}: {error.reason}" for error in junit_schema.iter_errors(text)]
    assert not problems, "\n".join(problems)


def test_the_sarif_of_each_verdict_says_what_code_scanning_should_show():
    levels = {verdict: sorted((r["ruleId"], r["level"]) for r in json.loads(gate_reports.sarif(make()))["runs"][0]["results"])
              for verdict, make in REPORTS.items()}
    assert levels == {
        "pass": [],
        "warn": [("MIA-GATE-LEAKAGE", "warning")],
        "fail": [("MIA-GATE-LEAKAGE", "error"), ("MIA-GATE-LEAKAGE", "error"), ("MIA-GATE-LIMIT", "error")],
        "undecided": [("MIA-GATE-UNDECIDED", "note")],
    }


def fingerprints(document: str) -> list[tuple[str, str]]:
    return [(r["ruleId"], r["partialFingerprints"]["miaGate/v1"]) for r in json.loads(document)["runs"][0]["results"]]


def test_sarif_fingerprints_stay_the_same_when_only_the_figures_change():
    first = gate_reports.sarif(failing(candidate=0.142, lower=0.071))
    second = gate_reports.sarif(failing(candidate=0.208, lower=0.115))
    assert first != second  # the messages and properties carry the new figures
    assert fingerprints(first) == fingerprints(second)
    assert len({fingerprint for _, fingerprint in fingerprints(first)}) == 3  # one per target and per limit


def test_sarif_fingerprints_differ_between_models():
    other = report(comparisons=[comparison(fpr=0.01, production=0.031, candidate=0.142, lower=0.071, p_value=0.0)],
                   limits=limit_rows(tpr=0.142, epsilon=2.17), slug="churn")
    assert not set(fingerprints(gate_reports.sarif(failing()))) & set(fingerprints(gate_reports.sarif(other)))


# RFC 3986 URI-reference characters: the schema asks `artifactLocation.uri` to be one ("format": "uri-reference"),
# which jsonschema checks only with an optional package, so it is checked here.
URI_REFERENCE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*")


@pytest.mark.parametrize("artifact_name", ["candidate.skops", "candidate model (v2).skops", "modèle.json", ""])
def test_the_sarif_location_is_a_uri_reference_whatever_the_artifact_is_called(artifact_name):
    document = json.loads(gate_reports.sarif(report(comparisons=[], limits=limit_rows(tpr=0.2, epsilon=None),
                                                    artifact_name=artifact_name)))
    uris = [location["physicalLocation"]["artifactLocation"]["uri"]
            for result in document["runs"][0]["results"] for location in result["locations"]]
    assert uris and all(URI_REFERENCE.fullmatch(uri) for uri in uris), uris
