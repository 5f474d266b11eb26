"""The controls annex follows the evidence: each framework's controls read met, not met, not measured or not
applicable from what the bundle holds, naming the audit and figure, the limit, the detector rate and its
client-days, the restriction and the gate result that decide them. A model with no record of differentially private
training never reads "met" for the ε control. The mapping files are data checked when loaded; the annex is computed
without Django."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audits.evidence.annex import (
    FRAMEWORKS_DIR,
    AnnexError,
    build_annex,
    combine,
    load_framework,
    load_frameworks,
)
from audits.evidence.checks import (
    DETECTOR_SOURCE,
    EPSILON_METRIC,
    HEADLINE_FPR,
    INCONCLUSIVE,
    RUN_DONE,
    TPR_METRIC,
    Facts,
    check_names,
    run_check,
)
from audits.evidence.format import ControlStatus

ROOT = Path(__file__).resolve().parents[2]
MET, NOT_MET = ControlStatus.MET, ControlStatus.NOT_MET
NOT_MEASURED, NOT_APPLICABLE = ControlStatus.NOT_MEASURED, ControlStatus.NOT_APPLICABLE
SHA = "ab" * 32


def finished_run(*, tpr: float = 0.01, epsilon: float = 0.4, breaches: tuple[str, ...] = (), weak: tuple[str, ...] = (),
                 reference_attacks: tuple[str, ...] = ("rmia", "lira_offline"), remediation: dict | None = None) -> dict:
    """A finished run as audit.json holds it (AuditRun.summary(full=True) and gather.run_data)."""
    values = {TPR_METRIC: tpr, EPSILON_METRIC: epsilon}
    return {
        "id": 7, "status": RUN_DONE, "finished_at": "2026-11-30T10:00:00+00:00", "error": None,
        "config": {"n_reference": 4, "output_policy": "full", "limits": {TPR_METRIC: 0.02, EPSILON_METRIC: 1.0}},
        "headline": {"tpr_at_fpr": {HEADLINE_FPR: {"value": tpr, "low": tpr / 2, "high": tpr * 2, "attack": "rmia"}},
                     "epsilon_lower": epsilon, "epsilon_attack": "lira_offline"},
        "policy": {"passed": not breaches and not weak, "verdict": "breached" if breaches else
                   INCONCLUSIVE if weak else "passed", "weak_audit": list(weak),
                   "breaches": [{"metric": m, "value": values[m], "limit": 0.02} for m in breaches]},
        "attacks": [{"name": name, "n_members": 300, "n_nonmembers": 300}
                    for name in ("loss", "confidence", *reference_attacks)],
        "reference_attacks": list(reference_attacks),
        "what_if": [{"policy": "full", "tpr_at_fpr": {HEADLINE_FPR: tpr}, "accuracy_drop": 0.0},
                    {"policy": "label", "tpr_at_fpr": {HEADLINE_FPR: 0.0}, "accuracy_drop": 0.004}],
        "remediation": remediation,
    }


def facts(**sections) -> Facts:
    base = {"model": {"slug": "credit", "output_policy": "full"},
            "training": {"deployed_artifact": {"version": 1, "sha256": SHA}, "dp_artifacts": []}}
    return Facts(**{**base, **sections})


def result(name: str, value: Facts):
    return run_check(name, value)


# --- audits -----------------------------------------------------------------------------------------------

def test_without_a_finished_audit_every_audit_check_reads_not_measured_naming_the_failed_one():
    failed = {"id": 3, "status": "failed", "error": "no non-members"}
    for name in ("audit.run_state_of_the_art_attacks", "audit.within_tpr_limit", "audit.within_epsilon_limit",
                 "audit.output_policy_measured"):
        outcome = result(name, facts(runs=[failed]))
        assert outcome.status == NOT_MEASURED, name
        assert outcome.evidence == "No audit of credit finished in this bundle's scope: audit 3 failed (no non-members)."


def test_an_audit_within_its_limits_reads_met_naming_the_audit_its_figure_and_the_limit():
    within = facts(runs=[finished_run(tpr=0.01, epsilon=0.4)])
    tpr = result("audit.within_tpr_limit", within)
    assert tpr.status == MET
    assert tpr.evidence == ("Audit 7: TPR at 1 % FPR 1.00 % (95 % interval 0.50 % to 2.00 %, rmia), within the policy "
                            "limit of 2.00 %.")
    epsilon = result("audit.within_epsilon_limit", within)
    assert epsilon.status == MET and "empirical ε lower bound 0.40 (lira_offline), within the policy limit of 1" in (
        epsilon.evidence)
    strongest = result("audit.run_state_of_the_art_attacks", within)
    assert strongest.status == MET and "rmia, lira_offline with 4 reference models" in strongest.evidence


def test_an_audit_over_its_limit_reads_not_met():
    over = facts(runs=[finished_run(tpr=0.25, epsilon=3.4, breaches=(TPR_METRIC, EPSILON_METRIC))])
    tpr = result("audit.within_tpr_limit", over)
    assert tpr.status == NOT_MET and tpr.evidence.endswith("exceeds the policy limit of 2.00 %.")
    assert "TPR at 1 % FPR 25.00 %" in tpr.evidence
    assert result("audit.within_epsilon_limit", over).status == NOT_MET


def test_a_weak_audit_passes_nothing_and_one_without_reference_models_is_not_state_of_the_art():
    weak = facts(runs=[finished_run(weak=("rmia could not run (no population data)",))])
    assert result("audit.within_tpr_limit", weak).status == NOT_MEASURED
    assert result("audit.run_state_of_the_art_attacks", weak).status == NOT_MET
    plain = result("audit.run_state_of_the_art_attacks", facts(runs=[finished_run(reference_attacks=())]))
    assert plain.status == NOT_MET and "ran loss, confidence only" in plain.evidence


def test_the_latest_finished_run_decides_and_the_what_if_is_the_output_measurement():
    earlier, latest = finished_run(tpr=0.3, breaches=(TPR_METRIC,)), {**finished_run(tpr=0.01), "id": 8}
    assert result("audit.within_tpr_limit", facts(runs=[earlier, latest])).evidence.startswith("Audit 8:")
    measured = result("audit.output_policy_measured", facts(runs=[latest]))
    assert measured.status == MET and "full 1.00 %, label 0.00 %" in measured.evidence
    assert result("audit.output_policy_measured", facts(runs=[{**latest, "what_if": []}])).status == NOT_MET


# --- differential privacy ---------------------------------------------------------------------------------

def test_a_model_without_a_dp_artifact_reads_not_measured_for_the_epsilon_control_never_met():
    assert result("training.dp_epsilon_documented", facts()).status == NOT_MEASURED
    dp_candidate = {"kind": "dp", "setting": {"training": "diffprivlib.LogisticRegression", "epsilon": 1.0},
                    "tpr_at_1pct_fpr": {"value": 0.011}}
    tried = facts(runs=[finished_run(remediation={"candidates": [dp_candidate]})],
                  training={"deployed_artifact": {"version": 1, "sha256": SHA},
                            "dp_artifacts": [{"run": 7, "sha256": "cd" * 32, "training": "diffprivlib.LogisticRegression",
                                              "epsilon": 1.0}]})
    outcome = result("training.dp_epsilon_documented", tried)
    assert outcome.status == NOT_MEASURED  # DP candidates were measured, but the deployed artifact is none of them
    assert "audit 7: diffprivlib.LogisticRegression at ε = 1.0, TPR at 1 % FPR 1.10 %" in outcome.evidence
    endpoint = facts(training={"deployed_artifact": None, "dp_artifacts": []})
    assert result("training.dp_epsilon_documented", endpoint).status == NOT_MEASURED


def test_a_deployed_dp_artifact_reads_met_with_its_epsilon():
    deployed = facts(training={"deployed_artifact": {"version": 2, "sha256": SHA}, "dp_artifacts": [
        {"run": 7, "sha256": SHA, "training": "diffprivlib.LogisticRegression", "epsilon": 1.0}]})
    outcome = result("training.dp_epsilon_documented", deployed)
    assert outcome.status == MET and "audit 7 trained (diffprivlib.LogisticRegression, ε = 1.0)" in outcome.evidence


# --- detection and the gateway ----------------------------------------------------------------------------

def detection(*, client_days: float, logged: int = 400, incidents: int = 2) -> dict:
    return {"calibrated_at": "2026-11-01T00:00:00+00:00", "false_alarm_budget": 0.001, "advised_client_days": 1000,
            "detectors": {"volume": 0.0005, "near_duplicate_sweep": 0.0005},
            "window": {"from_id": 1, "to_id": 90000, "clients": 250, "client_days": client_days, "trimmed_clients": 2},
            "period": {"client_days": logged, "incidents": incidents}}


def test_a_measured_false_alarm_rate_appears_with_its_client_days():
    outcome = result("detection.false_alarm_rate_measured", facts(detection=detection(client_days=1250.0)))
    assert outcome.status == MET
    assert "on 1,250.0 client-days of its own traffic" in outcome.evidence
    assert "false-alarm rate of 0.001 incidents per benign client-day (0.0005 per detector, 2 detectors)" in (
        outcome.evidence)
    assert "2 detector incident(s) over 400 client-days logged (0.005 per client-day" in outcome.evidence
    small = result("detection.false_alarm_rate_measured", facts(detection=detection(client_days=320.0)))
    assert small.status == NOT_MET and "fewer than the 1,000 client-days" in small.evidence
    assert result("detection.false_alarm_rate_measured", facts(detection={})).status == NOT_MEASURED


def test_alerts_must_name_the_client_its_volume_and_input_statistics():
    carrying = {"id": 4, "source": DETECTOR_SOURCE, "client": "c-9", "evidence": {
        "n_queries": 120, "signals": {"distribution_shift": {"evidence": {"z_distance": 5.1, "mean_cell_rank": 0.9}}}}}
    outcome = result("detection.alerts_carry_principal_volume_inputs", facts(alerts=[carrying]))
    assert outcome.status == MET and "alert 4: client c-9, 120 queries, mean_cell_rank, z_distance" in outcome.evidence
    bare = {"id": 5, "source": DETECTOR_SOURCE, "client": "c-2", "evidence": {"query_ids": [1, 2]}}
    outcome = result("detection.alerts_carry_principal_volume_inputs", facts(alerts=[carrying, bare]))
    assert outcome.status == NOT_MET and outcome.evidence.endswith("alert 5 lacks input statistics.")
    assert result("detection.alerts_carry_principal_volume_inputs", facts()).status == NOT_MEASURED


def test_a_throttle_counts_only_when_it_limits_each_flagged_client_by_itself():
    gateway = {"output_policy": "round:2", "outputs_reduced": True, "throttle_queries_per_minute": 10,
               "auto_restrict": {"action": "throttle", "severity": "critical", "hours": 24, "throttle": True,
                                 "limits_rate": True},
               "restrictions": [{"action": "throttle"}, {"action": "block"}]}
    outcome = result("gateway.per_client_throttle", facts(gateway=gateway))
    assert outcome.status == MET and "under 'throttle' (10 queries a minute) for 24 h" in outcome.evidence
    assert "2 client restriction(s) were in force in the period (1 block, 1 throttle)" in outcome.evidence
    labels = {**gateway, "auto_restrict": {"action": "label_only", "limits_rate": False}}
    assert result("gateway.per_client_throttle", facts(gateway=labels)).status == NOT_MET
    assert result("gateway.outputs_reduced", facts(gateway=gateway)).status == MET


# --- the privacy gate -------------------------------------------------------------------------------------

def candidate(**fields) -> dict:
    return {"id": 11, "status": "done", "verdict": "fail", "decided": True, "passed_gate": False,
            "artifact_name": "v2.skops", "reasons": ["at 1.0% FPR the candidate's TPR 9.00% is above production's"],
            "promoted_version": None, **fields}


def test_a_gate_failure_promoted_with_a_reason_reads_not_met_and_shows_the_reason():
    promoted = candidate(promoted_version=2, promoted_by="carla", promoted_at="2026-12-02T09:00:00+00:00",
                         promotion_reason="accepted by the DPO: the v1 model is withdrawn on Friday")
    outcome = result("gate.candidates_gated", facts(candidates=[promoted], deployments=[{"version": 2, "candidate": 11}]))
    assert outcome.status == NOT_MET
    assert outcome.evidence == (
        "Candidate 11 (v2.skops) was promoted to version 2 by carla on 2026-12-02 although the gate said fail (at 1.0% "
        "FPR the candidate's TPR 9.00% is above production's), with the reason: \u201caccepted by the DPO: the v1 "
        "model is withdrawn on Friday\u201d.")


def test_the_gate_reads_met_when_it_held_a_failure_back_and_not_applicable_when_nothing_was_gated():
    held = result("gate.candidates_gated", facts(candidates=[candidate()]))
    assert held.status == MET and held.evidence == "Candidate 11 (v2.skops) was gated (fail) and not promoted."
    passed = candidate(verdict="pass", passed_gate=True, promoted_version=2)
    assert result("gate.candidates_gated", facts(candidates=[passed])).status == MET
    assert result("gate.candidates_gated", facts()).status == NOT_APPLICABLE
    running = candidate(status="running", verdict=None, decided=False)
    assert result("gate.candidates_gated", facts(candidates=[running])).status == NOT_MEASURED
    ungated = result("gate.candidates_gated", facts(deployments=[{"version": 3, "sha256": SHA, "candidate": None}]))
    assert ungated.status == NOT_MET and "without passing through the gate" in ungated.evidence


# --- the mapping files ------------------------------------------------------------------------------------

def test_a_control_is_its_worst_checks_status():
    assert combine([MET, MET]) == MET
    assert combine([MET, NOT_APPLICABLE]) == MET
    assert combine([NOT_APPLICABLE, NOT_APPLICABLE]) == NOT_APPLICABLE
    assert combine([MET, NOT_MEASURED, NOT_APPLICABLE]) == NOT_MEASURED
    assert combine([NOT_MEASURED, NOT_MET, MET]) == NOT_MET


def test_every_framework_file_loads_and_every_check_of_the_vocabulary_is_used():
    frameworks = load_frameworks()
    assert [f.id for f in frameworks] == ["edpb-opinion-28-2024", "nist-ai-100-2-e2025", "owasp-aisvs-c11",
                                          "owasp-ml04-2023"]
    used = {name for f in frameworks for control in f.controls for name in control.checks}
    assert used == set(check_names())
    for framework in frameworks:
        spec = json.loads(framework.data)  # plain JSON: the standard library reads it
        assert isinstance(spec["mapping_version"], int) and spec["text_version"] and spec["source"].startswith("https://")
        assert all(control["clause"] for control in spec["controls"])


def test_a_framework_file_naming_an_unknown_check_is_refused(tmp_path):
    spec = json.loads((FRAMEWORKS_DIR / "owasp-ml04-2023.json").read_text())
    spec["controls"][1]["checks"].append("detection.vibes_checked")
    bad = tmp_path / "made-up.json"
    bad.write_text(json.dumps(spec))
    with pytest.raises(AnnexError, match=r"made-up.json: control 1 \(ML04-monitoring\): unknown evidence check\(s\) "
                                         r"'detection.vibes_checked'; known: audit\."):
        load_framework(bad)
    with pytest.raises(AnnexError, match="no framework mapping file"):
        load_frameworks(tmp_path / "empty")


def test_the_annex_rows_carry_their_framework_file_hash_and_clause():
    frameworks = load_frameworks()
    annex = build_annex(frameworks, facts(runs=[finished_run()]))
    by_id = {f["id"]: f for f in annex["frameworks"]}
    assert by_id["owasp-aisvs-c11"]["file"] == "controls/owasp-aisvs-c11.json"
    assert by_id["owasp-aisvs-c11"]["sha256"] == next(f.sha256 for f in frameworks if f.id == "owasp-aisvs-c11")
    row = next(row for row in annex["rows"] if row["control"] == "AISVS-11.3.2")
    assert (row["clause"], row["status"]) == ("11.3.2", "not measured")
    assert annex["statuses"] == ["met", "not met", "not measured", "not applicable"]


SCRIPT = """
import json, sys
for name in ("django", "numpy", "scipy", "sklearn", "pandas"):
    sys.modules[name] = None  # importing any of them now raises ImportError
from audits.evidence.annex import build_annex, load_frameworks
from audits.evidence.checks import Facts
annex = build_annex(load_frameworks(), Facts(model={"slug": "offline"},
                                             gateway={"output_policy": "label", "outputs_reduced": True}))
print(json.dumps({row["control"]: row["status"] for row in annex["rows"]}))
print(sorted(name for name in ("django", "numpy", "scipy", "sklearn", "pandas") if sys.modules.get(name)))
"""


def test_the_annex_is_computed_without_django_or_the_science_stack():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    statuses, imported = done.stdout.splitlines()
    assert imported == "[]"
    statuses = json.loads(statuses)
    assert statuses["ML04-obfuscation"] == "not measured"  # outputs reduced, but no audit measured the effect
    assert statuses["AISVS-11.3.2"] == "not measured" and statuses["AISVS-C3.2-gate"] == "not applicable"


def test_the_words_the_checks_read_are_the_ones_the_product_writes():
    from audits.attacks.verdict import LimitedMetric, VerdictState
    from audits.models import HEADLINE_FPR as STORED_FPR
    from audits.models import RunStatus
    from monitor.models import AlertSource

    assert (RUN_DONE, INCONCLUSIVE, HEADLINE_FPR) == (RunStatus.DONE, VerdictState.INCONCLUSIVE, STORED_FPR)
    assert (TPR_METRIC, EPSILON_METRIC) == (LimitedMetric.TPR_AT_1PCT_FPR, LimitedMetric.EPSILON_LOWER)
    assert DETECTOR_SOURCE == AlertSource.DETECTOR


# --- real bundles -----------------------------------------------------------------------------------------

def bundle_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def annex_of(files: dict[str, bytes]) -> dict[tuple[str, str], dict]:
    """{(control, check): that check's entry} of a bundle's controls.json."""
    annex = json.loads(files["controls.json"])
    return {(row["control"], check["name"]): {**check, "row": row["status"]}
            for row in annex["rows"] for check in row["checks"]}


@pytest.mark.django_db
def test_a_bundle_without_an_audit_reads_not_measured_and_never_met_for_dp():
    from audits.evidence.build import build_period_bundle
    from audits.evidence.keys import public_key_pem
    from audits.evidence.verify import verify_bundle
    from tests.factories import make_model

    model = make_model(slug="unaudited")
    data = build_period_bundle(model=model, start=model.created_at, end=timezone.now() + timedelta(minutes=1))
    checks = annex_of(bundle_files(data))
    for control, check in [("AISVS-11.3.3", "audit.within_tpr_limit"), ("ML04-testing", "audit.within_epsilon_limit"),
                           ("EDPB-28-resistance-tested", "audit.run_state_of_the_art_attacks")]:
        assert checks[(control, check)]["status"] == "not measured"
        assert checks[(control, check)]["row"] == "not measured"
    assert {entry["status"] for (_, name), entry in checks.items() if name == "training.dp_epsilon_documented"} == {
        "not measured"}
    assert checks[("AISVS-C3.2-gate", "gate.candidates_gated")]["status"] == "not applicable"
    assert verify_bundle(data, public_key_pem=public_key_pem()).ok


@pytest.mark.django_db
def test_the_audit_rows_follow_the_audit_within_and_over_its_limit():
    from audits import runner
    from audits.evidence.build import build_run_bundle
    from audits.models import AuditPolicy
    from audits.scheduling import request_audit
    from tests.factories import make_audited_model

    model = make_audited_model(n=200, slug="limits")
    policy = AuditPolicy.objects.ensure(model)
    AuditPolicy.objects.filter(pk=policy.pk).update(attacks=["loss", "confidence"], what_if=False,
                                                    max_tpr_at_1pct_fpr=0.99, max_epsilon_lower=50.0)
    loose = runner.execute(request_audit(model, enqueue=False).pk)
    # RMIA with reference models: the memorising forest's leak is then beyond chance, past a 2 % limit.
    AuditPolicy.objects.filter(pk=policy.pk).update(attacks=["loss", "rmia"], n_reference=2,
                                                    max_tpr_at_1pct_fpr=0.02, max_epsilon_lower=0.1)
    tight = runner.execute(request_audit(model, enqueue=False).pk)
    assert (loose.status, tight.status) == ("done", "done"), (loose.error, tight.error)

    loose_checks = annex_of(bundle_files(build_run_bundle(loose)))
    over_files = bundle_files(build_run_bundle(tight))
    within, over = loose_checks[("AISVS-11.3.3", "audit.within_tpr_limit")], annex_of(over_files)[
        ("AISVS-11.3.3", "audit.within_tpr_limit")]
    assert within["status"] == "met" and within["evidence"].startswith(f"Audit {loose.pk}: TPR at 1 % FPR")
    assert "within the policy limit of 99.00 %" in within["evidence"]
    assert over["status"] == "not met" and over["row"] == "not met", over
    assert over["evidence"].startswith(f"Audit {tight.pk}: TPR at 1 % FPR")
    assert over["evidence"].endswith("exceeds the policy limit of 2.00 %.")
    # Loss and confidence only are not the state of the art, whatever the figures; RMIA is.
    strongest = ("EDPB-28-resistance-tested", "audit.run_state_of_the_art_attacks")
    assert (loose_checks[strongest]["status"], annex_of(over_files)[strongest]["status"]) == ("not met", "met")
    assert f"Audit {tight.pk}: TPR at 1 % FPR" in over_files["report.html"].decode()


@pytest.mark.django_db
def test_a_promoted_gate_failure_a_calibrated_detector_and_a_deployed_dp_artifact_appear_in_the_bundle():
    from audits.candidates import promote
    from audits.evidence.build import build_period_bundle
    from audits.evidence.keys import public_key_pem
    from audits.evidence.verify import verify_bundle
    from audits.models import AuditRun, GateCandidate, HardenedArtifact, RunStatus
    from monitor.detection.context import state_for
    from monitor.models import ClientDayRollup, DetectorState
    from tests.factories import make_model, make_user

    model = make_model(slug="gated")
    artifact = model.current_artifact()
    failed = GateCandidate.objects.create(
        model=model, artifact_data=bytes(artifact.data), artifact_format=artifact.format,
        artifact_sha256=artifact.sha256, artifact_size=artifact.size, artifact_name="retrained.skops",
        production_version=model.version, status="done", verdict="fail", exit_code=1, finished_at=timezone.now(),
        report={"verdict": "fail", "reasons": ["breaks the policy: tpr_at_1pct_fpr 0.09 > limit 0.02"]})
    reason = "Accepted by the DPO until the retrained model ships on 2026-12-20"
    promote(failed, user=make_user(role="admin", username="dana"), reason=reason)
    model.refresh_from_db()
    # The team deployed the differentially private candidate a remediation run stored (here: its very bytes).
    run = AuditRun.objects.create(model=model, status=RunStatus.FAILED, error="stand-in for a remediation run")
    HardenedArtifact.objects.create(run=run, candidate=0, sha256=artifact.sha256, size=artifact.size, ciphertext=b"-",
                                    provenance={"kind": "dp", "setting": {"training": "diffprivlib.LogisticRegression",
                                                                          "epsilon": 1.0}})
    state_for(model)
    DetectorState.objects.filter(model=model).update(
        calibrated_at=timezone.now(), calibration={"volume": {"false_alarm_rate": 0.0005},
                                                   "near_duplicate_sweep": {"false_alarm_rate": 0.0005}},
        calibration_window={"from_id": 1, "to_id": 80000, "queries": 80000, "clients": 900, "client_days": 1250.0,
                            "trimmed_clients": ["c-1"]})
    today = timezone.now().date()
    ClientDayRollup.objects.bulk_create([ClientDayRollup(model=model, client_id=f"c-{i}", day=today, count=5,
                                                         confidence_sum=4.0) for i in range(40)])

    data = build_period_bundle(model=model, start=model.created_at, end=timezone.now() + timedelta(minutes=1))
    files = bundle_files(data)
    [stored] = json.loads(files["candidates.json"])["candidates"]
    assert (stored["id"], stored["verdict"], stored["promoted_version"], stored["promoted_by"]) == (
        failed.pk, "fail", 2, "dana")
    assert stored["promotion_reason"] == reason and not stored["passed_gate"]
    checks = annex_of(files)
    gate = checks[("AISVS-C3.2-gate", "gate.candidates_gated")]
    assert gate["status"] == "not met" and f"\u201c{reason}\u201d" in gate["evidence"]
    assert "breaks the policy: tpr_at_1pct_fpr 0.09 > limit 0.02" in gate["evidence"]
    rate = checks[("AISVS-11.6.2", "detection.false_alarm_rate_measured")]
    assert rate["status"] == "met" and "on 1,250.0 client-days of its own traffic" in rate["evidence"]
    assert "over 40 client-days logged" in rate["evidence"]
    dp = checks[("AISVS-11.3.2", "training.dp_epsilon_documented")]
    assert dp["status"] == "met" and f"is the differentially private candidate audit {run.pk} trained" in dp["evidence"]
    html = files["report.html"].decode()
    assert f"Reason: {reason}" in html and "breaks the policy: tpr_at_1pct_fpr 0.09 &gt; limit 0.02" in html
    assert verify_bundle(data, public_key_pem=public_key_pem()).ok
