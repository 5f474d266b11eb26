"""Evidence bundles: what a bundle holds, that its report reads right, that it carries no member value,
that its CSVs cannot run formulas, that the export itself is in the audit log, and period bundles."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone
from pypdf import PdfReader

from audits import runner
from audits.evidence.build import build_period_bundle, build_run_bundle
from audits.evidence.format import FORMULA_PREFIXES, EvidenceError
from audits.evidence.keys import public_key_pem, signing_key
from audits.evidence.verify import verify_bundle
from audits.models import AuditPolicy, AuditRun
from audits.scheduling import request_audit
from monitor.alerts.lifecycle import acknowledge, raise_signal, resolve
from monitor.registry.registration import Upload, register_model
from monitor.trail.chain import GENESIS
from monitor.trail.models import TrailEntry
from tests.factories import CLASSES, csv_bytes, make_audited_model, make_channel, make_user, signal

FILES = {"report.pdf", "report.html", "audit.json", "metrics.csv", "roc.csv", "alerts.csv", "audit_log.jsonl",
         "public_key.pem", "README.txt", "MANIFEST.json", "MANIFEST.sig", "controls.json", "controls.csv",
         "candidates.json", "controls/owasp-ml04-2023.json", "controls/owasp-aisvs-c11.json",
         "controls/edpb-opinion-28-2024.json", "controls/nist-ai-100-2-e2025.json"}
PLANTED = [123456.789, 987.654321, -31337.4242]  # member values no bundle may contain, in any form
FORMULA_CLIENT = "=cmd|' /C calc'!A0"


@dataclass
class Exported:
    data: bytes
    files: dict[str, bytes]
    run_id: int
    members_csv: bytes
    export_entries: list[dict]
    anchor: str
    artifact_sha256: str
    data_sha256: dict


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def make_model_with_planted_members(*, n: int = 300):
    """A random forest trained on its members; some member cells hold values that are easy to find."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(7)
    X = rng.normal(size=(n * 4, 4)) * [10, 1000, 3, 1] + [40, 5000, 5, 0]
    y = np.asarray(CLASSES)[(X[:, 0] - 40 + rng.normal(scale=15, size=len(X)) > 0).astype(int)]
    X[0:n:3, 1], X[1:n:3, 3], X[2:n:7, 0] = PLANTED
    members, nonmembers, population = slice(0, n), slice(n, 2 * n), slice(2 * n, 4 * n)
    estimator = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[members], y[members])
    members_csv = csv_bytes(X[members], y[members])
    model = register_model(
        slug="planted", name="Planted credit model", team="risk", label_column="label",
        artifact=Upload(sio.dumps(estimator), "rf.skops"), members=Upload(members_csv, "members.csv"),
        nonmembers=Upload(csv_bytes(X[nonmembers], y[nonmembers])), population=Upload(csv_bytes(X[population], y[population])),
    )
    return model, members_csv


@pytest.fixture(scope="module")
def exported(django_db_setup, django_db_blocker) -> Exported:
    """One audited model with a handled detector alert, exported once; the database is rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic():
        model, members_csv = make_model_with_planted_members()
        make_channel(kind="email", target="security@example.org", name="Security desk")
        run = runner.execute(request_audit(model, enqueue=False).pk)
        assert run.status == "done", run.error
        alert, _ = raise_signal(signal(model=model, client_id=FORMULA_CLIENT, severity="critical"))
        analyst = make_user(role="security", username="sam")
        acknowledge(alert, user=analyst, note="-2+3 queries looked scripted")
        resolve(alert, user=analyst, note="@SUM(1) client blocked at the gateway")
        data = build_run_bundle(run, exported_by=make_user(role="compliance", username="carla"))
        files = unzip(data)
        first_seq = json.loads(files["MANIFEST.json"])["audit_log"]["first_seq"]
        previous = TrailEntry.objects.filter(seq=first_seq - 1).first()
        result = Exported(
            data=data, files=files, run_id=run.pk, members_csv=members_csv,
            export_entries=list(TrailEntry.objects.filter(action="evidence.exported").values()),
            anchor=previous.hash if previous else GENESIS, artifact_sha256=run.artifact_sha256,
            data_sha256=dict(run.data_sha256),
        )
        transaction.set_rollback(True)
    return result


def pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf)).pages)


def test_a_bundle_holds_every_file_and_a_signed_manifest_of_them(exported):
    assert set(exported.files) == FILES
    manifest_bytes = exported.files["MANIFEST.json"]
    manifest = json.loads(manifest_bytes)
    assert set(manifest["files"]) == FILES - {"MANIFEST.json", "MANIFEST.sig"}
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": hashlib.sha256(exported.files[name]).hexdigest(), "size": len(exported.files[name])}
    signing_key().public_key().verify(exported.files["MANIFEST.sig"], manifest_bytes)  # raises if wrong
    assert exported.files["public_key.pem"] == public_key_pem()
    assert manifest["kind"] == "run" and manifest["runs"] == [exported.run_id]
    assert manifest["signature"]["algorithm"] == "Ed25519"
    assert verify_bundle(exported.data, public_key_pem=public_key_pem()).ok


def test_audit_json_has_what_it_takes_to_reproduce_and_judge_the_run(exported):
    document = json.loads(exported.files["audit.json"])
    [run] = document["runs"]
    assert run["id"] == exported.run_id and run["status"] == "done"
    assert run["artifact_sha256"] == exported.artifact_sha256 == document["model"]["artifact"]["sha256"]
    assert run["data_sha256"] == exported.data_sha256 and set(run["data_sha256"]) == {"members", "nonmembers", "population"}
    assert run["config"]["seed"] == 0 and run["attack_config"]["seed"] == 0
    assert run["environment"]["packages"]["scikit-learn"] and run["attack_config"]["versions"]["numpy"]
    rate = run["headline"]["tpr_at_fpr"]["0.01"]
    assert rate["low"] <= rate["value"] <= rate["high"]
    assert {a["name"] for a in run["attacks"]} >= {"loss", "rmia", "lira_offline"}
    assert all(a["roc"]["fpr"] and a["tpr_at_fpr"]["0.001"]["high"] is not None for a in run["attacks"])
    assert run["what_if"] and run["policy"]["breaches"] is not None
    assert document["policy"]["limits"]["tpr_at_1pct_fpr"] == 0.02
    assert document["export"]["exported_by"] == "carla"
    assert document["detection"]["false_alarm_budget"] and document["gateway"]["output_policy"] == "full"
    assert document["training"]["deployed_artifact"]["sha256"] == exported.artifact_sha256
    assert "controls" not in document  # the annex is controls.json, computed from this file
    [alert] = document["alerts"][-1:]
    assert [e["kind"] for e in alert["events"]] == ["opened", "acknowledged", "resolved"]
    assert alert["deliveries"] and alert["deliveries"][0]["channel"] == "Security desk"
    assert "security@example.org" not in exported.files["audit.json"].decode()  # channel targets stay private


def test_metrics_and_roc_csvs_carry_every_attack_with_intervals(exported):
    document = json.loads(exported.files["audit.json"])
    [run] = document["runs"]
    metrics = list(csv.DictReader(io.StringIO(exported.files["metrics.csv"].decode())))
    tpr_rows = {(r["attack"], r["fpr"]): r for r in metrics if r["scope"] == "attack" and r["metric"] == "tpr_at_fpr"}
    for attack in run["attacks"]:
        for fpr, rate in attack["tpr_at_fpr"].items():
            row = tpr_rows[(attack["name"], fpr)]
            assert float(row["value"]) == rate["value"] and float(row["ci_low"]) == rate["low"]
            assert float(row["ci_high"]) == rate["high"]
    assert {r["output_policy"] for r in metrics if r["scope"] == "what_if"} >= {"full", "label"}
    roc = list(csv.DictReader(io.StringIO(exported.files["roc.csv"].decode())))
    assert len(roc) == sum(len(a["roc"]["fpr"]) for a in run["attacks"])


def test_the_audit_log_segment_carries_every_field_of_the_models_entries_and_verifies_on_its_own(exported):
    manifest = json.loads(exported.files["MANIFEST.json"])
    lines = [json.loads(line) for line in exported.files["audit_log.jsonl"].decode().splitlines()]
    assert manifest["audit_log"]["anchor_prev_hash"] == exported.anchor == lines[0]["prev_hash"]
    previous = exported.anchor
    for line in lines:
        assert line["prev_hash"] == previous
        previous = line["hash"]
        if set(line) == {"seq", "prev_hash", "hash"}:
            continue  # another model's or person's entry (here: the users made above), a link of the chain only
        assert {"seq", "at", "actor", "actor_id", "ip", "action", "object_type", "object_id", "before", "after",
                "prev_hash", "hash", "payload"} <= set(line)
        assert hashlib.sha256((line["prev_hash"] + line["payload"]).encode()).hexdigest() == line["hash"]
    assert [line["seq"] for line in lines] == list(range(lines[0]["seq"], lines[-1]["seq"] + 1))
    assert {"audit.requested", "audit.finished", "alert.acknowledged", "alert.resolved"} <= {
        line.get("action") for line in lines}


def test_the_export_is_logged_before_the_segment_is_cut(exported):
    [entry] = exported.export_entries
    assert entry["actor_name"] == "carla" and entry["object_type"] == "audits.auditrun"
    assert entry["object_id"] == str(exported.run_id)
    manifest = json.loads(exported.files["MANIFEST.json"])
    assert entry["after"]["export_id"] == manifest["export_id"] and entry["after"]["runs"] == [exported.run_id]
    last = json.loads(exported.files["audit_log.jsonl"].decode().splitlines()[-1])
    assert (last["seq"], last["hash"], last["action"]) == (entry["seq"], entry["hash"], "evidence.exported")
    assert manifest["audit_log"]["export_seq"] == entry["seq"]


def test_the_pdf_report_has_every_section(exported):
    text = pdf_text(exported.files["report.pdf"])
    for heading in ["Membership-inference audit evidence", "Model under audit", "Audit policy", "Attacks and configuration",
                    "Headline", "Per-attack metrics", "ROC curves", "What-if", "Per class and most exposed records",
                    "Audit runs in the period", "Alerts in the period and their lifecycle", "Recommendations",
                    "Privacy gate", "Controls annex", "Integrity", "Reproducibility"]:
        assert heading in text, heading
    annex = json.loads(exported.files["controls.json"])
    for framework in annex["frameworks"]:
        assert framework["name"] in text, framework["name"]
    assert f"Audit {exported.run_id}: TPR at 1 % FPR" in text  # the annex names the audit and its figure
    assert exported.artifact_sha256 in text.replace(" ", "")
    assert "false positive rate" in text  # the ROC figure is drawn as vector text, not a screenshot
    assert "acknowledged" in text and "sam" in text and "Page 1 of" in text
    assert len(PdfReader(io.BytesIO(exported.files["report.pdf"])).pages) >= 3
    html = exported.files["report.html"].decode()
    assert html.count("data:image/svg+xml;base64,") >= 1 and "<script" not in html


def planted_forms() -> list[bytes]:
    forms: set[bytes] = set()
    for value in PLANTED:
        for text in {repr(value), f"{value:.2f}", f"{value:.3f}", f"{value:.6f}", f"{value:g}", f"{value:e}",
                     f"{value:.6e}", f"{value:.8g}", json.dumps(value)}:
            forms.add(text.encode())
        forms.update({struct.pack("<d", value), struct.pack(">d", value), struct.pack("<f", value), struct.pack(">f", value)})
    return sorted(forms)


def test_no_member_value_appears_anywhere_in_a_bundle(exported):
    assert b"123456.789" in exported.members_csv and b"987.654321" in exported.members_csv  # really planted
    haystacks = dict(exported.files)
    haystacks["report.pdf (text)"] = pdf_text(exported.files["report.pdf"]).encode()
    for index, uri in enumerate(re.findall(rb"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", exported.files["report.html"])):
        haystacks[f"report.html figure {index}"] = base64.b64decode(uri)
    forms = planted_forms()
    for name, content in haystacks.items():
        found = [form for form in forms if form in content]
        assert not found, f"{name} contains member values {found}"


def test_csv_cells_that_look_like_formulas_are_escaped(exported):
    rows = list(csv.DictReader(io.StringIO(exported.files["alerts.csv"].decode())))
    detector = [row for row in rows if row["source"] == "detector"]
    assert {row["client_id"] for row in detector} == {"'" + FORMULA_CLIENT}
    notes = {row["event"]: row["event_note"] for row in detector}
    assert notes["acknowledged"] == "'-2+3 queries looked scripted" and notes["resolved"].startswith("'@SUM(1)")
    for name in ("metrics.csv", "roc.csv", "alerts.csv", "controls.csv"):
        for row in csv.reader(io.StringIO(exported.files[name].decode())):
            for cell in row:
                if cell.startswith(FORMULA_PREFIXES):
                    float(cell)  # only numbers we computed (e.g. a negative accuracy cost) may start with "-"


def registered_days_ago(model, days: int):
    """The model as if registered `days` ago: a period may not start before the day it was registered."""
    type(model).objects.filter(pk=model.pk).update(created_at=timezone.now() - timedelta(days=days))
    model.refresh_from_db()
    return model


@pytest.mark.django_db
def test_a_period_bundle_covers_the_runs_requested_in_the_period():
    model = registered_days_ago(make_audited_model(n=200, slug="quarterly"), 60)
    AuditPolicy.objects.filter(pk=AuditPolicy.objects.ensure(model).pk).update(attacks=["loss", "confidence"], what_if=False)  # fast
    before = request_audit(model, enqueue=False)
    AuditRun.objects.filter(pk=before.pk).update(created_at=timezone.now() - timedelta(days=40))  # outside the period
    start = timezone.now() - timedelta(days=1)
    first = runner.execute(request_audit(model, enqueue=False).pk)
    second = runner.execute(request_audit(model, enqueue=False).pk)
    data = build_period_bundle(model=model, start=start, end=timezone.now() + timedelta(minutes=1))
    files = unzip(data)
    manifest = json.loads(files["MANIFEST.json"])
    assert manifest["kind"] == "period" and manifest["runs"] == [first.pk, second.pk]
    assert [run["id"] for run in json.loads(files["audit.json"])["runs"]] == [first.pk, second.pk]
    metrics = list(csv.DictReader(io.StringIO(files["metrics.csv"].decode())))
    assert {int(row["run_id"]) for row in metrics} == {first.pk, second.pk}
    text = pdf_text(files["report.pdf"])
    assert "All audit runs of the model requested in the period (2)" in text
    assert f"Attacks and configuration audit {second.pk}" in text  # the latest run in detail
    assert files["report.html"].count(b"data:image/svg+xml;base64,") == 2  # ROC and the trend over the period
    entry = TrailEntry.objects.get(action="evidence.exported")
    assert entry.object_type == "monitor.registeredmodel" and entry.after["runs"] == [first.pk, second.pk]
    assert verify_bundle(data, public_key_pem=public_key_pem()).ok


@pytest.mark.django_db
def test_a_running_audit_or_an_empty_period_is_refused():
    model = make_audited_model(n=200, slug="busy")
    run = request_audit(model, enqueue=False)
    with pytest.raises(EvidenceError, match="queued"):
        build_run_bundle(run)
    now = timezone.now()
    with pytest.raises(EvidenceError, match="empty"):
        build_period_bundle(model=model, start=now, end=now)
    assert not TrailEntry.objects.filter(action="evidence.exported").exists()


@pytest.mark.django_db
def test_a_failed_audit_and_a_period_without_audits_are_exported_as_such():
    model = registered_days_ago(make_audited_model(n=200, slug="broken"), 60)
    model.datasets.filter(kind="nonmembers").delete()
    failed = runner.execute(request_audit(model, enqueue=False).pk)
    assert failed.status == "failed"
    files = unzip(build_run_bundle(failed))
    assert f"Audit {failed.pk} failed" in pdf_text(files["report.pdf"]) and json.loads(files["audit.json"])["runs"][0]["error"]
    now = timezone.now()
    quiet = build_period_bundle(model=model, start=now - timedelta(days=30), end=now - timedelta(days=20))
    files = unzip(quiet)
    assert json.loads(files["audit.json"])["runs"] == []
    assert "No audit run was requested in this period" in pdf_text(files["report.pdf"])
    assert verify_bundle(quiet, public_key_pem=public_key_pem()).ok


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("security", 200), ("compliance", 200), ("viewer", 403)])
def test_evidence_api_roles_and_the_export_is_logged(api_as, role, status):
    from audits.evidence.verify import verify_bundle
    from monitor.trail.models import TrailEntry
    from tests.factories import user_token

    model = make_audited_model(n=300)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    response = api_as(user_token(role=role)).get(f"/api/v1/audits/{run.pk}/evidence.zip")
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"] == "application/zip"
        assert verify_bundle(response.content).ok
        assert TrailEntry.objects.filter(action="evidence.exported").exists()


@pytest.mark.django_db
def test_evidence_of_a_queued_run_is_409(api_as):
    from tests.factories import user_token

    model = make_audited_model(n=300)
    run = request_audit(model, enqueue=False)
    response = api_as(user_token(role="compliance")).get(f"/api/v1/audits/{run.pk}/evidence.zip")
    assert response.status_code == 409 and response.json()["error"]
