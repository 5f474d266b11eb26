"""The audit log is a hash chain: any edit, deletion or reordering is found and named."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from monitor.trail.models import TrailEntry, verify_chain

pytestmark = pytest.mark.django_db


def write(n: int) -> list[TrailEntry]:
    return [TrailEntry.record(action="test.action", actor_name="tester", object_type="thing", object_id=str(i),
                                 after={"i": i}) for i in range(n)]


@contextlib.contextmanager
def as_table_owner() -> Iterator[None]:
    """Tampering as someone who owns the table: on PostgreSQL they first switch off the append-only trigger."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's deferred FK checks would block ALTER TABLE
            cursor.execute("ALTER TABLE audits_auditlogentry DISABLE TRIGGER audit_log_append_only")
    yield
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audits_auditlogentry ENABLE TRIGGER audit_log_append_only")


def test_an_untouched_chain_verifies(capsys):
    write(5)
    call_command("verify_audit_log")
    assert "5 entries, chain intact" in capsys.readouterr().out


def test_an_edited_entry_is_named():
    entries = write(4)
    with as_table_owner():
        TrailEntry.objects.filter(pk=entries[2].pk).update(after={"i": 99})  # bypasses the model's guard, like raw SQL
    with pytest.raises(CommandError, match="entry #3: its content does not match its hash"):
        call_command("verify_audit_log")


def test_a_deleted_entry_is_named():
    entries = write(4)
    with as_table_owner():
        TrailEntry.objects.filter(pk=entries[1].pk).delete()
    ok, message = verify_chain()
    assert not ok and message == "entry #2 is missing (next is #3)"


def test_a_rehashed_edit_breaks_the_link_to_the_next_entry():
    entries = write(3)
    forged = TrailEntry.objects.get(pk=entries[0].pk)
    forged.after = {"i": 42}
    with as_table_owner():
        TrailEntry.objects.filter(pk=forged.pk).update(after=forged.after, hash=forged.compute_hash())
    ok, message = verify_chain()
    assert not ok and message.startswith("entry #2: prev_hash does not match")


def test_entries_cannot_be_changed_or_deleted_through_the_model():
    [entry] = write(1)
    with pytest.raises(RuntimeError, match="append-only"):
        entry.save()
    with pytest.raises(RuntimeError, match="append-only"):
        entry.delete()


def test_logins_failures_registrations_and_tokens_are_logged(client):
    from tests.factories import ingest_token, make_model, make_user

    make_user(role="viewer", username="vera", password="a-long-password-1")
    client.post("/login/", {"username": "vera", "password": "wrong"})
    client.post("/login/", {"username": "vera", "password": "a-long-password-1"})
    client.post("/logout/")
    model = make_model()
    clear = ingest_token(model=model)
    actions = list(TrailEntry.objects.values_list("action", "actor_name", "object_id"))
    assert ("auth.login_failed", "anonymous", "vera") in actions
    assert any(a[:2] == ("auth.login", "vera") for a in actions)
    assert any(a[0] == "auth.logout" for a in actions) and any(a[0] == "model.registered" for a in actions)
    issued = TrailEntry.objects.get(action="token.issued")
    assert issued.after["prefix"] == clear[:12] and clear not in str(issued.after)
    assert not any("a-long-password-1" in str(e.payload()) for e in TrailEntry.objects.all())
    assert verify_chain()[0]


@pytest.mark.parametrize("statement", ["UPDATE audits_auditlogentry SET after = '{}'", "DELETE FROM audits_auditlogentry"])
def test_postgresql_refuses_raw_sql_edits_of_the_log(statement):
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only; SQLite keeps the model-level guard")
    write(2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert TrailEntry.objects.count() == 2
    ok, _ = verify_chain()
    assert ok


def test_deleting_a_user_keeps_their_entries(db):
    from tests.factories import make_user

    user = make_user(role="viewer")
    TrailEntry.record(action="test.action", actor=user)
    user.delete()
    entry = TrailEntry.objects.get(action="test.action")
    assert entry.actor_id is None and entry.actor_name == user.username
    assert verify_chain()[0]
