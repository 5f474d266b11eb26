"""An upload sent again after a lost answer (the same Idempotency-Key) answers with the candidate the first one stored:
one row, one trail entry, one gate; the same key with another artifact is a conflict; a bad key is refused."""
from __future__ import annotations

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audits.models import GateCandidate
from monitor.trail.models import TrailEntry
from tests.audits.test_gate_candidates import forest_bytes, production  # noqa: F401 (a fixture)
from tests.factories import user_token

pytestmark = pytest.mark.django_db


def post(client, token: str, artifact: bytes, key: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", **({"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {})}
    return client.post("/api/v1/models/gated/candidates",
                       data={"artifact": SimpleUploadedFile("candidate.skops", artifact)}, **headers)


def test_the_same_key_answers_with_the_first_candidate_and_stores_nothing_more(client, production):  # noqa: F811
    token, key = user_token(role="security"), str(uuid.uuid4())
    artifact = forest_bytes(production, min_samples_leaf=5, seed=1)
    first = post(client, token, artifact, key)
    assert first.status_code == 202, first.content
    again = post(client, token, artifact, key)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert GateCandidate.objects.count() == 1
    assert TrailEntry.objects.filter(action="candidate.submitted").count() == 1
    # Another key (or none) is another candidate.
    assert post(client, token, artifact, str(uuid.uuid4())).json()["id"] != first.json()["id"]
    assert post(client, token, artifact, None).status_code == 202
    assert GateCandidate.objects.count() == 3


def test_the_same_key_with_another_artifact_is_a_conflict_and_stores_nothing(client, production):  # noqa: F811
    token, key = user_token(role="security"), "ci-run-1234"
    assert post(client, token, forest_bytes(production, min_samples_leaf=5, seed=1), key).status_code == 202
    other = post(client, token, forest_bytes(production, min_samples_leaf=5, seed=2), key)
    assert other.status_code == 409, other.content
    assert other.json()["details"][0]["field"] == "Idempotency-Key"
    assert GateCandidate.objects.count() == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_bad_key_is_refused_naming_the_header(client, production, key):  # noqa: F811
    answer = post(client, user_token(role="security"), forest_bytes(production, min_samples_leaf=5, seed=1), key)
    assert answer.status_code == 400, answer.content
    assert answer.json()["details"][0]["field"] == "Idempotency-Key"
    assert not GateCandidate.objects.exists()
