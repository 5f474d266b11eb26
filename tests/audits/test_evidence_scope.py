"""A model's evidence bundle holds the trail entries about that model in full and every other entry of the period as a
hash-only link (its number, its hash and the hash before it), so the whole chain still verifies; and a period
longer than EVIDENCE_MAX_PERIOD_DAYS, or one starting before the day the model was registered, is refused before
anything is built."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from pypdf import PdfReader

from audits.evidence.build import build_period_bundle
from audits.evidence.format import LINK_KEYS, EvidencePeriodError
from audits.evidence.keys import public_key_pem, signing_key
from audits.evidence.verify import verify_bundle
from audits.exposure import UnknownRecord, record_exposure
from monitor.access.roles import record_member_id_read
from monitor.alerts.lifecycle import acknowledge, raise_signal
from monitor.models import RegisteredModel
from monitor.trail.hooks import note_failed_login
from monitor.trail.models import TrailEntry
from tests.factories import ingest_token, make_model, make_user, signal, user_token

pytestmark = pytest.mark.django_db

# What other models and other people left in the trail; none of it may be in model A's bundle.
OTHER_RECORD, OTHER_ADDRESS, OTHER_CLIENT, GUESSED_USERNAME = (
    "secret-member-of-b", "198.51.100.23", "client-of-b", "mallory-guess")


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def log_lines(files: dict[str, bytes]) -> list[dict]:
    return [json.loads(line) for line in files["audit_log.jsonl"].decode().splitlines()]


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def resigned_with_lines(files: dict[str, bytes], lines: list[dict]) -> bytes:
    """The bundle with audit_log.jsonl replaced, its hash updated and the manifest signed with the real key."""
    files = dict(files)
    files["audit_log.jsonl"] = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
    manifest = json.loads(files["MANIFEST.json"])
    manifest["files"]["audit_log.jsonl"] = {"sha256": hashlib.sha256(files["audit_log.jsonl"]).hexdigest(),
                                            "size": len(files["audit_log.jsonl"])}
    files["MANIFEST.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    files["MANIFEST.sig"] = signing_key().sign(files["MANIFEST.json"])
    return rezip(files)


@pytest.fixture
def two_models_and_a_busy_trail():
    """Model A with its own activity, interleaved with model B's and a stranger's failed logins."""
    a, b = make_model(slug="model-a"), make_model(slug="model-b")
    analyst = make_user(role="security", username="sam")
    note_failed_login(address=OTHER_ADDRESS, username=GUESSED_USERNAME, now=timezone.now())
    with pytest.raises(UnknownRecord):
        record_exposure(b, OTHER_RECORD, user=analyst, ip=OTHER_ADDRESS)
    with pytest.raises(UnknownRecord):
        record_exposure(a, "a-record", user=analyst, ip="192.0.2.1")
    alert_a, _ = raise_signal(signal(model=a, client_id="client-of-a"))
    alert_b, _ = raise_signal(signal(model=b, client_id=OTHER_CLIENT))
    acknowledge(alert_a, user=analyst, note="looking")
    acknowledge(alert_b, user=analyst, note="b is mine")
    record_member_id_read(user=analyst, ip="192.0.2.1", via="alert page", shown=[(alert_a, 3)])
    record_member_id_read(user=analyst, ip=OTHER_ADDRESS, via="alert page", shown=[(alert_b, 4)])
    ingest_token(model=a)
    ingest_token(model=b)
    return a, b


def test_a_bundle_keeps_its_models_entries_in_full_and_every_other_entry_as_a_hash_only_link(two_models_and_a_busy_trail):
    a, b = two_models_and_a_busy_trail
    data = build_period_bundle(model=a, start=a.created_at, end=timezone.now() + timedelta(minutes=1))
    files = unzip(data)
    lines = log_lines(files)
    full = [line for line in lines if "payload" in line]
    links = [line for line in lines if "payload" not in line]
    assert [line["seq"] for line in lines] == list(range(lines[0]["seq"], lines[-1]["seq"] + 1))  # the whole chain
    assert links and all(set(line) == set(LINK_KEYS) for line in links)
    assert [line["action"] for line in full] == ["model.registered", "exposure.lookup", "alert.opened",
                                                 "alert.acknowledged", "member_ids.read", "token.issued",
                                                 "evidence.exported"]
    document = json.loads(files["audit.json"])
    assert (document["audit_log"]["count"], document["audit_log"]["links"]) == (len(lines), len(links))

    pdf = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(files["report.pdf"])).pages).encode()
    for secret in (OTHER_RECORD, OTHER_ADDRESS, OTHER_CLIENT, GUESSED_USERNAME, b.slug, "b is mine"):
        for name, content in {**files, "report.pdf (text)": pdf}.items():
            assert secret.encode() not in content, f"{secret} in {name}"
    report = verify_bundle(data, public_key_pem=public_key_pem())
    assert report.ok, report.lines()


def test_the_verifier_checks_the_chain_across_hash_links(two_models_and_a_busy_trail):
    a, _ = two_models_and_a_busy_trail
    files = unzip(build_period_bundle(model=a, start=a.created_at, end=timezone.now() + timedelta(minutes=1)))
    lines = log_lines(files)
    index = next(i for i, line in enumerate(lines) if "payload" not in line and i + 1 < len(lines))

    forged = [dict(line) for line in lines]
    forged[index]["hash"] = "f" * 64  # a link whose hash is not the one the next entry chains to
    report = verify_bundle(resigned_with_lines(files, forged), public_key_pem=public_key_pem())
    messages = [c.message for c in report.failures if c.item == "audit_log.jsonl chain"]
    assert any(f"prev_hash does not match the hash of entry #{lines[index]['seq']}" in m for m in messages), report.lines()

    dropped = lines[:index] + lines[index + 1:]
    report = verify_bundle(resigned_with_lines(files, dropped), public_key_pem=public_key_pem())
    messages = [c.message for c in report.failures if c.item == "audit_log.jsonl chain"]
    assert any(f"follows entry #{lines[index]['seq'] - 1}" in m for m in messages), report.lines()

    padded = [dict(line) for line in lines]
    padded[index]["action"] = "auth.login"  # a link carries nothing but its number and hashes
    report = verify_bundle(resigned_with_lines(files, padded), public_key_pem=public_key_pem())
    messages = [c.message for c in report.failures if c.item == "audit_log.jsonl chain"]
    assert any(f"(entry #{lines[index]['seq']}): no payload" in m for m in messages), report.lines()


def registered_days_ago(model: RegisteredModel, days: int) -> RegisteredModel:
    RegisteredModel.objects.filter(pk=model.pk).update(created_at=timezone.now() - timedelta(days=days))
    model.refresh_from_db()
    return model


def test_a_period_longer_than_the_cap_is_refused_naming_end_and_nothing_is_built(settings):
    settings.EVIDENCE_MAX_PERIOD_DAYS = 30
    model = registered_days_ago(make_model(slug="capped"), 100)
    now = timezone.now()
    with pytest.raises(EvidencePeriodError, match="at most 30 days") as refused:
        build_period_bundle(model=model, start=now - timedelta(days=31), end=now)
    assert refused.value.field == "end"
    assert not TrailEntry.objects.filter(action="evidence.exported").exists()
    assert verify_bundle(build_period_bundle(model=model, start=now - timedelta(days=30), end=now)).ok


def test_a_start_before_the_day_the_model_was_registered_is_refused_naming_start():
    model = make_model(slug="young")
    registered_day = timezone.localtime(model.created_at).replace(hour=0, minute=0, second=0, microsecond=0)
    with pytest.raises(EvidencePeriodError, match="before the model was registered") as refused:
        build_period_bundle(model=model, start=registered_day - timedelta(seconds=1), end=timezone.now())
    assert refused.value.field == "start"
    assert not TrailEntry.objects.filter(action="evidence.exported").exists()
    assert verify_bundle(build_period_bundle(model=model, start=registered_day, end=timezone.now())).ok


@pytest.mark.parametrize(("start_days_ago", "field", "says"), [
    (400, "end", "at most 366 days"),
    (10_000, "start", "before the model was registered"),
])
def test_the_api_answers_400_naming_the_field_and_builds_nothing(api_as, start_days_ago, field, says):
    model = registered_days_ago(make_model(slug="api-capped"), 500)
    now = timezone.now()
    start, end = (now - timedelta(days=start_days_ago)).isoformat(), now.isoformat()
    response = api_as(user_token(role="compliance")).get(
        f"/api/v1/models/{model.slug}/evidence.zip?start={quote(start)}&end={quote(end)}")
    assert response.status_code == 400, response.content[:300]
    [detail] = response.json()["details"]
    assert detail["field"] == field and says in detail["message"], detail
    assert not TrailEntry.objects.filter(action="evidence.exported").exists()


def test_the_api_still_answers_a_period_within_the_cap(api_as):
    model = registered_days_ago(make_model(slug="api-fine"), 500)
    now = timezone.now()
    start, end = (now - timedelta(days=366)).isoformat(), now.isoformat()
    response = api_as(user_token(role="compliance")).get(
        f"/api/v1/models/{model.slug}/evidence.zip?start={quote(start)}&end={quote(end)}")
    assert response.status_code == 200 and verify_bundle(response.content).ok
