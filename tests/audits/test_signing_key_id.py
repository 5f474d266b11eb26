"""Bundles and signed trail heads name the key that signed them (issue 27, low finding "the signing key without an
id"): the key id is the first 16 hex characters of the SHA-256 of the raw public key, so that after a key change a
verifier knows which published key to use; the offline verifier checks the id against the key it is given and
names a mismatch."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction

from audits.evidence.format import MANIFEST, SIGNATURE, TRAIL_HEAD, key_id
from audits.evidence.keys import public_key_pem, signing_key
from audits.evidence.verify import check_signed_head, verify_bundle
from monitor.trail.models import TrailEntry
from monitor.trail.signing import check_signed_heads, sign_trail_head
from tests.factories import sample_run_bundle

OTHER_KEY = Ed25519PrivateKey.generate()


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def files_of(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def resigned(bundle: bytes, change_manifest, *, key: Ed25519PrivateKey) -> bytes:
    """The bundle with its manifest changed and signed again with `key` (what a key holder could do)."""
    files = files_of(bundle)
    manifest = json.loads(files[MANIFEST])
    change_manifest(manifest)
    files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    files[SIGNATURE] = key.sign(files[MANIFEST])
    return zipped(files)


@pytest.fixture(scope="module")
def bundle(django_db_setup, django_db_blocker) -> bytes:
    """A real bundle with a signed trail head in it; the database is rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic():
        TrailEntry.record(action="test.action", actor_name="tester", after={"i": 1})
        sign_trail_head()
        data = sample_run_bundle(slug="key-id")
        transaction.set_rollback(True)
    return data


def test_the_key_id_is_the_start_of_the_public_keys_sha256():
    raw = OTHER_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(OTHER_KEY.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


@pytest.mark.django_db
def test_the_bundle_and_its_signed_head_carry_the_id_of_the_key_that_signed_them(bundle):
    files = files_of(bundle)
    expected = key_id(signing_key().public_key())
    assert json.loads(files[MANIFEST])["signature"]["key_id"] == expected
    assert json.loads(files[TRAIL_HEAD])["key_id"] == expected
    assert expected in files["README.txt"].decode()


@pytest.mark.django_db
def test_the_verifier_accepts_the_id_of_the_given_key(bundle):
    report = verify_bundle(bundle, public_key_pem=public_key_pem())
    assert report.ok, report.lines()
    assert f"OK    key id: {key_id(signing_key().public_key())} is the id of the given public key" in report.lines()


@pytest.mark.django_db
def test_verifying_with_another_key_names_the_key_the_bundle_needs(bundle):
    report = verify_bundle(bundle, public_key_pem=pem(OTHER_KEY))
    ours, other = key_id(signing_key().public_key()), key_id(OTHER_KEY.public_key())
    assert f"FAIL  key id: the bundle was signed with key {ours}; the given public key is {other}" in report.lines()


@pytest.mark.django_db
def test_a_key_id_that_is_not_the_signing_keys_is_named_even_under_a_valid_signature(bundle):
    forged = resigned(bundle, lambda m: m["signature"].update(key_id="0123456789abcdef"), key=signing_key())
    report = verify_bundle(forged, public_key_pem=public_key_pem())
    ours = key_id(signing_key().public_key())
    assert not report.ok
    assert f"FAIL  key id: the bundle was signed with key 0123456789abcdef; the given public key is {ours}" \
        in report.lines()
    assert not any(line.startswith("FAIL  MANIFEST.sig") for line in report.lines())


@pytest.mark.django_db
def test_a_bundle_from_before_key_ids_still_verifies_and_says_so(bundle):
    older = resigned(bundle, lambda m: m["signature"].pop("key_id"), key=signing_key())
    report = verify_bundle(older, public_key_pem=public_key_pem())
    assert report.ok, report.lines()
    assert "OK    key id: none in MANIFEST.json (a bundle from before key ids); the signature decides" \
        in report.lines()


def signed_head(key: Ed25519PrivateKey, **changes: object) -> dict:
    from monitor.trail.chain import head_statement, key_fingerprint

    head = {"seq": 3, "hash": "a" * 64, "signed_at": "2026-01-01T00:00:00+00:00",
            "key_sha256": key_fingerprint(key.public_key()), "key_id": key_id(key.public_key())}
    head["signature"] = key.sign(head_statement(seq=3, hash=head["hash"], signed_at=head["signed_at"])).hex()
    return {**head, **changes}


def test_a_signed_head_whose_key_id_is_not_the_given_keys_is_named():
    ok, message = check_signed_head(signed_head(OTHER_KEY, key_id="0123456789abcdef"), key=OTHER_KEY.public_key(),
                                    lines=[])
    assert not ok
    assert message.endswith(f"names key id 0123456789abcdef, not the id of this key ({key_id(OTHER_KEY.public_key())})")


def test_a_signed_head_with_its_own_key_id_verifies():
    ok, message = check_signed_head(signed_head(OTHER_KEY), key=OTHER_KEY.public_key(), lines=[])
    assert ok, message


@pytest.mark.django_db
def test_heads_signed_before_a_key_change_are_named_by_their_key_id(settings):
    TrailEntry.record(action="test.action", actor_name="tester", after={"i": 1})
    sign_trail_head()
    old = key_id(signing_key().public_key())
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(os.urandom(32)).decode()
    ok, message = check_signed_heads()
    assert not ok
    assert f"signed with key {old}, not the evidence key {key_id(signing_key().public_key())}" in message
