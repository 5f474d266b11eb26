"""Gate candidates through the API (issue 28): uploaded and checked at once, audited by the task's code, their
reports fetched by a CI, and promoted — a failed one only with a written reason, which the trail keeps."""
from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import skops.io as sio
from django.utils import timezone
from sklearn.ensemble import RandomForestClassifier

from audits.candidates import execute, reap
from audits.models import CandidateStatus, GateCandidate
from monitor.models import ModelArtifact
from monitor.trail.models import TrailEntry, verify_chain
from tests.factories import csv_bytes, make_audited_model, make_data, user_token

pytestmark = pytest.mark.django_db


def forest_bytes(model, *, min_samples_leaf: int, seed: int, X=None, y=None) -> bytes:
    members = model.datasets.get(kind="members").load()
    X = members.X if X is None else X
    y = np.asarray(model.class_labels)[members.y] if y is None else y
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=min_samples_leaf, random_state=seed)
    return sio.dumps(forest.fit(X, y))


@pytest.fixture
def production():
    return make_audited_model(slug="gated", n=400, estimator=RandomForestClassifier(
        n_estimators=50, min_samples_leaf=20, random_state=0))


def upload(client, token: str | None, slug: str, files: dict[str, tuple[str, bytes]], **form):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {name: SimpleUploadedFile(filename, content) for name, (filename, content) in files.items()}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(f"/api/v1/models/{slug}/candidates", data={**data, **form}, **headers)


def get(client, token: str, path: str):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def promote(client, token: str, slug: str, candidate_id: int, reason: str = ""):
    return client.post(f"/api/v1/models/{slug}/candidates/{candidate_id}/promote", data=json.dumps({"reason": reason}),
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_leaky_candidate_fails_and_is_promoted_only_with_a_written_reason_which_the_trail_keeps(client, production):
    token, viewer = user_token(role="security"), user_token(role="viewer")
    answer = upload(client, token, "gated", {"artifact": ("leaf1.skops", forest_bytes(production, min_samples_leaf=1,
                                                                                       seed=0))})
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["status"] == "queued" and body["production_version"] == 1 and body["artifact_name"] == "leaf1.skops"
    # Not gated yet: no reports, no promotion.
    assert get(client, token, f"/api/v1/models/gated/candidates/{body['id']}/reports/sarif").status_code == 409
    assert promote(client, token, "gated", body["id"], "x" * 40).status_code == 409

    execute(body["id"])  # what the worker's task runs
    detail = get(client, viewer, f"/api/v1/models/gated/candidates/{body['id']}").json()
    assert detail["status"] == "done" and detail["verdict"] == "fail" and detail["exit_code"] == 1, detail
    assert detail["progress"] == 100 and detail["needs_reason_to_promote"] is True
    sarif = get(client, viewer, f"/api/v1/models/gated/candidates/{body['id']}/reports/sarif")
    assert sarif["Content-Type"].startswith("application/sarif+json")
    assert any(r["level"] == "error" for r in sarif.json()["runs"][0]["results"])
    assert b"<testsuite" in get(client, viewer, f"/api/v1/models/gated/candidates/{body['id']}/reports/junit").content
    assert "fail" in get(client, viewer, f"/api/v1/models/gated/candidates/{body['id']}/reports/summary").content.decode()

    # A viewer cannot promote; nobody promotes a failed candidate without a reason.
    assert promote(client, viewer, "gated", body["id"], "x" * 40).status_code == 403
    refused = promote(client, token, "gated", body["id"], "ship it")
    assert refused.status_code == 400 and refused.json()["details"][0]["field"] == "reason"
    production.refresh_from_db()
    assert production.version == 1 and not ModelArtifact.objects.filter(model=production, version=2).exists()

    reason = "Accepted by the risk board on 2026-12-06: the model serves only internal scoring for one week."
    promoted = promote(client, token, "gated", body["id"], reason)
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["promoted_version"] == 2 and promoted.json()["promotion_reason"] == reason
    production.refresh_from_db()
    assert production.version == 2
    assert ModelArtifact.objects.get(model=production, version=2).sha256 == detail["artifact_sha256"]
    entry = TrailEntry.objects.filter(action="candidate.promoted").get()
    assert entry.after["verdict"] == "fail" and entry.after["promotion_reason"] == reason
    assert entry.after["version"] == 2 and entry.actor_name.startswith("security")
    assert verify_chain()[0]
    # Promoted once; a second promotion is a conflict.
    assert promote(client, token, "gated", body["id"], reason).status_code == 409


def test_a_candidate_identical_up_to_its_seed_passes_and_is_promoted_without_a_reason(client, production):
    token = user_token(role="admin")
    policy = "/api/v1/models/gated/audit-policy"
    assert client.patch(policy, data=json.dumps({"gate_alpha": 0.7}), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 400
    assert client.patch(policy, data=json.dumps({"gate_alpha": 0.01}), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {token}").json()["gate_alpha"] == 0.01
    answer = upload(client, token, "gated", {"artifact": ("seed7.skops", forest_bytes(production, min_samples_leaf=20,
                                                                                       seed=7))})
    candidate = execute(answer.json()["id"])
    assert candidate.verdict in ("pass", "warn"), candidate.report
    assert candidate.report["shared_reference_models"] and candidate.report["alpha"] == 0.01  # the policy's level
    assert promote(client, token, "gated", candidate.pk).status_code == 200
    production.refresh_from_db()
    assert production.version == 2
    # The model moved on: a candidate gated against version 1 is gated again, not promoted.
    other = upload(client, token, "gated", {"artifact": ("again.skops", forest_bytes(production, min_samples_leaf=20,
                                                                                      seed=8))}).json()
    GateCandidate.objects.filter(id=other["id"]).update(production_version=1)
    failed = execute(other["id"])
    assert failed.status == CandidateStatus.FAILED and "moved from version 1 to 2" in failed.error


def test_bad_candidates_are_refused_at_once_naming_the_field_and_nothing_is_stored(client, production):
    token, viewer, compliance = (user_token(role=role) for role in ("security", "viewer", "compliance"))
    entries = TrailEntry.objects.count()
    garbage = upload(client, token, "gated", {"artifact": ("model.skops", b"not a model at all")})
    assert garbage.status_code == 400 and garbage.json()["details"][0]["field"] == "artifact", garbage.content
    X, y = make_data(n=100, seed=3)
    narrow = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[:, :2], y)
    other_features = upload(client, token, "gated", {"artifact": ("narrow.skops", sio.dumps(narrow))})
    assert other_features.status_code == 400 and "features" in other_features.json()["details"][0]["message"]
    good = forest_bytes(production, min_samples_leaf=20, seed=1)
    bad_members = upload(client, token, "gated", {"artifact": ("ok.skops", good),
                                                  "members": ("members.csv", b"age,income\n1,2\n")})
    assert bad_members.status_code == 400 and bad_members.json()["details"][0]["field"] == "members"
    bad_alpha = upload(client, token, "gated", {"artifact": ("ok.skops", good)}, alpha="0.7")
    assert bad_alpha.status_code == 400 and bad_alpha.json()["details"][0]["field"] == "alpha"
    missing = upload(client, token, "gated", {})
    assert missing.status_code == 400 and "artifact" in json.dumps(missing.json())
    assert upload(client, None, "gated", {"artifact": ("ok.skops", good)}).status_code == 401
    assert upload(client, viewer, "gated", {"artifact": ("ok.skops", good)}).status_code == 403
    assert upload(client, compliance, "gated", {"artifact": ("ok.skops", good)}).status_code == 403
    assert upload(client, token, "nope", {"artifact": ("ok.skops", good)}).status_code == 404
    assert get(client, token, "/api/v1/models/gated/candidates/999").status_code == 404
    assert get(client, token, "/api/v1/models/gated/candidates/1/reports/pdf").status_code in (400, 404)
    assert not GateCandidate.objects.exists() and TrailEntry.objects.count() == entries


def test_a_candidate_trained_on_new_data_is_gated_on_its_own_members(client, production):
    """Its own members CSV: attacked on those (unpaired against production's), with production's non-members."""
    token = user_token(role="security")
    population = production.datasets.get(kind="population").load()
    new_X, new_y = population.X[:400], np.asarray(production.class_labels)[population.y[:400]]
    artifact = forest_bytes(production, min_samples_leaf=20, seed=3, X=new_X, y=new_y)
    answer = upload(client, token, "gated", {"artifact": ("new-data.skops", artifact),
                                             "members": ("new-members.csv", csv_bytes(new_X, new_y))})
    assert answer.status_code == 202, answer.content
    assert answer.json()["own_members_rows"] == 400
    candidate = execute(answer.json()["id"])
    assert candidate.status == CandidateStatus.DONE, candidate.error
    assert candidate.report["n_members"] > 0
    assert all(c.get("paired") is False for c in candidate.report["comparisons"]), candidate.report["comparisons"]


def test_a_silent_worker_fails_its_candidate_with_the_reason_and_a_lost_message_is_sent_again(production, settings):
    from audits.candidates import Upload, submit

    candidate = submit(production, artifact=Upload(forest_bytes(production, min_samples_leaf=20, seed=2), "c.skops"))
    long_ago = timezone.now() - timedelta(seconds=settings.AUDIT_STALE_SECONDS + 60)
    GateCandidate.objects.filter(id=candidate.pk).update(status=CandidateStatus.RUNNING, heartbeat_at=long_ago)
    queued = submit(production, artifact=Upload(forest_bytes(production, min_samples_leaf=20, seed=3), "d.skops"))
    GateCandidate.objects.filter(id=queued.pk).update(created_at=long_ago)
    assert reap() == {"failed": 1, "resent": 1}
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.FAILED and "stopped responding" in candidate.error
