"""The trail's head, signed hourly with the evidence key, anchors it outside the owner's reach: verify_audit_log
names a trail rebuilt or truncated below a signed head, and an evidence bundle carries the latest signed head,
which the offline verifier checks against the bundle's own audit-log segment."""
from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.schedules import crontab
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from audits import tasks
from audits.evidence.build import build_period_bundle
from audits.evidence.keys import public_key_pem, signing_key
from audits.evidence.verify import check_signed_head, verify_bundle
from monitor.models import RegisteredModel
from monitor.trail.chain import GENESIS, head_statement, key_fingerprint
from monitor.trail.models import SignedTrailHead, TrailEntry, TrailHead, verify_chain
from monitor.trail.signing import TrailBroken, check_signed_heads, sign_trail_head
from tests.factories import make_model

TABLES = ("audits_auditlogentry", "audits_auditchainhead", "monitor_signedtrailhead")


def write(n: int) -> list[TrailEntry]:
    return [TrailEntry.record(action="test.action", actor_name="tester", object_id=str(i), after={"i": i})
            for i in range(n)]


@contextlib.contextmanager
def as_database_owner() -> Iterator[None]:
    """Whoever owns the tables: on PostgreSQL they switch off every trigger first (SQLite has none)."""
    _set_triggers("DISABLE")
    try:
        yield
    finally:
        _set_triggers("ENABLE")


def _set_triggers(state: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's deferred FK checks would block ALTER TABLE
            for table in TABLES:
                cursor.execute(f"ALTER TABLE {table} {state} TRIGGER USER")


def rebuild_trail(*, forged_seq: int) -> None:
    """What the owner of a keyless chain can do: edit an entry and rehash everything after it, head included."""
    previous = GENESIS
    with as_database_owner():
        for entry in TrailEntry.objects.order_by("seq"):
            if entry.seq == forged_seq:
                entry.after = {"forged": True}
            entry.prev_hash = previous
            previous = entry.compute_hash()
            TrailEntry.objects.filter(pk=entry.pk).update(after=entry.after, prev_hash=entry.prev_hash, hash=previous)
        TrailHead.objects.filter(pk=1).update(hash=previous)
    assert verify_chain()[0]  # the chain and its head agree again: only the signed head can tell


def truncate_trail(*, keep: int) -> None:
    """A clean cut: the entries after `keep` removed and the head moved back to match."""
    with as_database_owner():
        TrailEntry.objects.filter(seq__gt=keep).delete()
        TrailHead.objects.filter(pk=1).update(seq=keep, hash=TrailEntry.objects.get(seq=keep).hash)
    assert verify_chain()[0]


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --- signing -------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_head_is_signed_once_until_it_moves():
    write(3)
    first = sign_trail_head()
    assert first is not None and (first.seq, first.hash) == (3, TrailEntry.objects.get(seq=3).hash)
    assert sign_trail_head() is None
    write(2)
    second = sign_trail_head()
    assert second is not None and second.seq == 5
    assert list(SignedTrailHead.objects.values_list("seq", flat=True)) == [3, 5]
    stored = SignedTrailHead.objects.get(seq=5)
    assert stored.key_sha256 == key_fingerprint(signing_key().public_key())
    signing_key().public_key().verify(bytes.fromhex(stored.signature), head_statement(
        seq=5, hash=stored.hash, signed_at=stored.signed_at.isoformat()))  # raises if wrong


@pytest.mark.django_db
def test_an_empty_trail_signs_nothing():
    assert sign_trail_head() is None
    assert not SignedTrailHead.objects.exists()


@pytest.mark.django_db
def test_signing_refuses_a_trail_broken_since_the_last_signed_head():
    write(2)
    sign_trail_head()
    write(2)
    with as_database_owner():
        TrailEntry.objects.filter(seq=4).update(after={"i": 99})
    with pytest.raises(TrailBroken, match="trail head #4 not signed: entry #4: its content does not match"):
        sign_trail_head()
    assert list(SignedTrailHead.objects.values_list("seq", flat=True)) == [2]


@pytest.mark.django_db
def test_signing_refuses_a_head_moved_back_below_the_last_signed_one():
    write(4)
    sign_trail_head()
    truncate_trail(keep=2)
    with pytest.raises(TrailBroken, match=r"the trail's head \(#2\) is not at or past the last signed head #4"):
        sign_trail_head()


@pytest.mark.django_db
def test_beat_signs_the_head_every_hour_through_the_task():
    entry = settings.CELERY_BEAT_SCHEDULE["sign-trail-head"]
    assert entry["task"] == "audits.tasks.sign_trail_head" == tasks.sign_trail_head.name
    assert isinstance(entry["schedule"], crontab) and entry["schedule"].hour == set(range(24))
    assert entry["schedule"].minute == {5}
    write(2)
    assert tasks.sign_trail_head() == 2
    assert tasks.sign_trail_head() is None


@pytest.mark.django_db
def test_signed_heads_are_append_only():
    write(1)
    signed = sign_trail_head()
    assert signed is not None
    with pytest.raises(RuntimeError, match="append-only"):
        signed.save()
    with pytest.raises(RuntimeError, match="append-only"):
        signed.delete()


@pytest.mark.django_db
@pytest.mark.parametrize("statement", ["UPDATE monitor_signedtrailhead SET seq = 1",
                                       "DELETE FROM monitor_signedtrailhead"])
def test_postgresql_refuses_raw_sql_edits_of_signed_heads(db_vendor, statement):
    if db_vendor != "postgresql":
        pytest.skip("the signed heads' trigger exists on PostgreSQL only; SQLite keeps the model-level guard")
    write(2)
    sign_trail_head()
    with pytest.raises(DatabaseError, match="signed trail heads are append-only"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(statement)
    assert check_signed_heads() == (True, "1 signed head(s) verified, the latest #2")


# --- verify_audit_log ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_verify_audit_log_checks_every_signed_head(capsys):
    write(2)
    sign_trail_head()
    write(1)
    sign_trail_head()
    call_command("verify_audit_log")
    out = capsys.readouterr().out
    assert "3 entries, chain intact" in out and "2 signed head(s) verified, the latest #3" in out


@pytest.mark.django_db
def test_a_trail_truncated_below_a_signed_head_is_named():
    write(4)
    sign_trail_head()
    truncate_trail(keep=2)
    with pytest.raises(CommandError, match=r"signed head #4 \(signed .*\): the trail has no entry #4: it was "
                                           r"truncated below a signed head"):
        call_command("verify_audit_log")


@pytest.mark.django_db
def test_a_rebuilt_trail_is_named_by_the_signed_head_it_contradicts():
    write(3)
    sign_trail_head()
    rebuild_trail(forged_seq=2)
    ok, message = check_signed_heads()
    assert not ok
    assert message.startswith("signed head #3 (signed ") and message.endswith(
        "entry #3 is not the entry that was signed: the trail was rebuilt")
    with pytest.raises(CommandError, match="signed head #3 .*the trail was rebuilt"):
        call_command("verify_audit_log")


@pytest.mark.django_db
def test_an_edited_signed_head_is_named():
    write(2)
    sign_trail_head()
    with as_database_owner():
        SignedTrailHead.objects.filter(seq=2).update(hash="f" * 64)
    ok, message = check_signed_heads()
    assert not ok and message.endswith("its signature does not verify (the row was edited)")
    assert message.startswith("signed head #2 ")


@pytest.mark.django_db
def test_a_head_signed_by_another_key_is_named(settings):
    write(2)
    sign_trail_head()
    settings.EVIDENCE_SIGNING_KEY = "Ag" * 21 + "A="  # base64 of 32 other bytes
    ok, message = check_signed_heads()
    assert not ok and "not the evidence key" in message


# --- evidence bundles ----------------------------------------------------------------------------------------

def period_bundle() -> bytes:
    model = make_model(slug="signed-head")
    now = timezone.now()
    # Registered two days ago, so the period (and its trail segment) may start before the entries written above.
    RegisteredModel.objects.filter(pk=model.pk).update(created_at=now - timedelta(days=2))
    model.refresh_from_db()
    return build_period_bundle(model=model, start=now - timedelta(days=1), end=now + timedelta(minutes=1))


@pytest.mark.django_db
def test_a_bundle_carries_the_latest_signed_head_and_verifies():
    write(2)
    sign_trail_head()
    write(1)
    latest = sign_trail_head()
    assert latest is not None
    data = period_bundle()
    files = unzip(data)
    head = json.loads(files["trail_head.json"])
    assert (head["seq"], head["hash"], head["signature"]) == (latest.seq, latest.hash, latest.signature)
    assert "trail_head.json" in json.loads(files["MANIFEST.json"])["files"]
    report = verify_bundle(data, public_key_pem=public_key_pem())
    assert report.ok, report.lines()
    [check] = [c for c in report.checks if c.item == "trail_head.json signed head"]
    assert check.message.endswith("entry #3 of audit_log.jsonl is the entry that was signed")


@pytest.mark.django_db
def test_a_bundle_before_any_signed_head_has_none():
    write(1)
    data = period_bundle()
    assert "trail_head.json" not in unzip(data)
    assert verify_bundle(data, public_key_pem=public_key_pem()).ok


@pytest.mark.django_db
def test_a_bundle_cut_from_a_rebuilt_trail_fails_on_its_signed_head(tmp_path):
    write(3)
    sign_trail_head()
    rebuild_trail(forged_seq=1)
    data = period_bundle()
    report = verify_bundle(data, public_key_pem=public_key_pem())
    assert [(c.item, c.message.split(": ", 1)[1]) for c in report.failures] == [
        ("trail_head.json signed head", "entry #3 of audit_log.jsonl is not the entry that was signed: the audit log was rebuilt")]
    bundle, key = tmp_path / "bundle.zip", tmp_path / "key.pem"
    bundle.write_bytes(data)
    key.write_bytes(public_key_pem())
    with pytest.raises(CommandError, match="trail_head.json signed head: signed head #3 .*the audit log was rebuilt"):
        call_command("verify_evidence", str(bundle), "--public-key", str(key), stdout=io.StringIO())


# --- the pure check, without a database ----------------------------------------------------------------------

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def signed(*, seq: int, hash: str, key: Ed25519PrivateKey = KEY) -> dict:
    at = "2026-12-06T06:05:00+00:00"
    return {"seq": seq, "hash": hash, "signed_at": at, "key_sha256": key_fingerprint(key.public_key()),
            "signature": key.sign(head_statement(seq=seq, hash=hash, signed_at=at)).hex()}


LINES = [{"seq": seq, "hash": f"{seq:064x}"} for seq in (10, 11, 12)]


def test_a_signed_head_inside_the_segment_must_match_its_entry():
    assert check_signed_head(signed(seq=11, hash=f"{11:064x}"), key=KEY.public_key(), lines=LINES)[0]
    ok, message = check_signed_head(signed(seq=11, hash="e" * 64), key=KEY.public_key(), lines=LINES)
    assert not ok and message.endswith("entry #11 of audit_log.jsonl is not the entry that was signed: the audit "
                                       "log was rebuilt")


def test_a_signed_head_beyond_the_segment_names_a_truncation():
    ok, message = check_signed_head(signed(seq=14, hash="e" * 64), key=KEY.public_key(), lines=LINES)
    assert not ok and message.endswith("the audit log ends at #12, below the signed head: entries were removed "
                                       "after it was signed")


def test_a_signed_head_before_the_segment_is_left_to_verify_audit_log():
    ok, message = check_signed_head(signed(seq=3, hash="e" * 64), key=KEY.public_key(), lines=LINES)
    assert ok and "before this segment (#10–#12)" in message


def test_a_signed_head_with_a_changed_field_or_another_key_fails():
    forged = {**signed(seq=11, hash=f"{11:064x}"), "signed_at": "2026-12-07T00:00:00+00:00"}
    assert check_signed_head(forged, key=KEY.public_key(), lines=LINES) == (
        False, "signed head #11 (signed 2026-12-07T00:00:00+00:00): its signature does not verify (the head was changed)")
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    ok, message = check_signed_head(signed(seq=11, hash=f"{11:064x}", key=other), key=KEY.public_key(), lines=LINES)
    assert not ok and "not the key of this bundle" in message
    assert check_signed_head({"seq": "11"}, key=KEY.public_key(), lines=LINES)[0] is False
