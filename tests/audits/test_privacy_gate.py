"""`manage.py gate`: a candidate audited beside the production model on the same records (issue 28). A leakier
candidate fails with exit 1 and a SARIF error; one identical up to its seed passes; a weak audit cannot decide."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # noqa: S405 (parses the XML our own command wrote)

import numpy as np
import pytest
import skops.io as sio
from django.core.management import CommandError, call_command
from sklearn.ensemble import RandomForestClassifier

from tests.factories import make_audited_model

pytestmark = pytest.mark.django_db


def candidate_file(model, tmp_path, *, min_samples_leaf: int, seed: int) -> str:
    """A forest trained on the model's members, as the team's next release would be."""
    members = model.datasets.get(kind="members").load()
    labels = np.asarray(model.class_labels)[members.y]
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=min_samples_leaf, random_state=seed)
    path = tmp_path / f"candidate-{min_samples_leaf}-{seed}.skops"
    path.write_bytes(sio.dumps(forest.fit(members.X, labels)))
    return str(path)


def gate(model, artifact: str, tmp_path) -> tuple[int, dict, ET.Element, dict]:
    outputs = {kind: tmp_path / f"gate.{kind}" for kind in ("junit", "sarif", "summary", "json")}
    try:
        call_command("gate", model.slug, "--artifact", artifact, *(f"--{kind}={path}" for kind, path in outputs.items()))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code)
    return (code, json.loads(outputs["json"].read_text()), ET.fromstring(outputs["junit"].read_text()),  # noqa: S314
            json.loads(outputs["sarif"].read_text()))


@pytest.fixture
def regularised():
    """Production: a forest of leaf size 20, which leaks little."""
    return make_audited_model(slug="gated", n=400, estimator=RandomForestClassifier(
        n_estimators=50, min_samples_leaf=20, random_state=0))


def test_a_leakier_candidate_fails_with_exit_1_a_junit_failure_and_a_sarif_error(regularised, tmp_path):
    code, report, junit, sarif = gate(regularised, candidate_file(regularised, tmp_path, min_samples_leaf=1, seed=0),
                                      tmp_path)
    assert code == 1 and report["verdict"] == "fail", report
    at_1 = report["comparisons"][0]
    assert at_1["significant"] and at_1["candidate"] > at_1["production"] and at_1["lower"] > 0
    assert int(junit.get("failures")) >= 1 and junit.find("testcase/failure") is not None
    results = sarif["runs"][0]["results"]
    assert sarif["version"] == "2.1.0" and any(r["level"] == "error" and r["ruleId"] == "MIA-GATE-LEAKAGE"
                                               for r in results)
    assert all(r["partialFingerprints"]["miaGate/v1"] for r in results)


def test_a_candidate_identical_up_to_its_seed_passes(regularised, tmp_path):
    code, report, junit, sarif = gate(regularised, candidate_file(regularised, tmp_path, min_samples_leaf=20, seed=7),
                                      tmp_path)
    assert code == 0 and report["verdict"] in ("pass", "warn"), report
    assert report["shared_reference_models"], report  # same family and hyperparameters: the reference models were reused
    assert junit.get("failures") == "0", ET.tostring(junit)
    assert not [r for r in sarif["runs"][0]["results"] if r["level"] == "error"], sarif
    # The SARIF fingerprint names the model, rule and target, not the figures: the same finding tracks across runs.


def test_a_weak_audit_cannot_decide_and_exits_2(tmp_path):
    """No population and too few non-members to lend it some: the reference attacks cannot run."""
    from monitor.registry.registration import Upload, register_model
    from tests.factories import csv_bytes, make_data

    X, y = make_data(n=300, seed=1)
    production = RandomForestClassifier(n_estimators=20, random_state=0).fit(X[:200], y[:200])
    model = register_model(slug="weak", name="Weak", label_column="label",
                           artifact=Upload(sio.dumps(production), "rf.skops"),
                           members=Upload(csv_bytes(X[:200], y[:200])), nonmembers=Upload(csv_bytes(X[200:230], y[200:230])))
    candidate = tmp_path / "candidate.skops"
    candidate.write_bytes(sio.dumps(RandomForestClassifier(n_estimators=20, random_state=3).fit(X[:200], y[:200])))
    code, report, junit, _ = gate(model, str(candidate), tmp_path)
    assert code == 2 and report["verdict"] == "undecided" and report["reasons"], report
    assert junit.get("skipped") == "1"


def test_a_candidate_of_other_features_or_a_missing_file_is_refused_with_exit_2(regularised, tmp_path):
    other = tmp_path / "other.skops"
    rng = np.random.default_rng(0)
    other.write_bytes(sio.dumps(RandomForestClassifier(5).fit(rng.normal(size=(50, 3)), rng.integers(0, 2, 50))))
    for artifact, phrase in ((str(other), "takes 3 features"), (str(tmp_path / "absent.skops"), "no such file")):
        with pytest.raises(CommandError, match=phrase) as caught:
            call_command("gate", regularised.slug, "--artifact", artifact)
        assert caught.value.returncode == 2
