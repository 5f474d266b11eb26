"""The end of the trail is guarded: a chain intact up to where it stops, but stopping short of its head, is
named as truncated; a head moved back is named; on PostgreSQL TRUNCATE of the trail and its head is refused,
and the head only moves forward."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from monitor.trail.models import TrailEntry, TrailHead, verify_chain

pytestmark = pytest.mark.django_db
TRAIL_TABLES = ("audits_auditlogentry", "audits_auditchainhead")


def write(n: int) -> list[TrailEntry]:
    return [TrailEntry.record(action="test.action", actor_name="tester", object_id=str(i), after={"i": i})
            for i in range(n)]


@contextlib.contextmanager
def as_table_owner() -> Iterator[None]:
    """Tampering as someone who owns the tables: on PostgreSQL they first switch off every trigger on them."""
    _set_triggers("DISABLE")
    try:
        yield
    finally:
        _set_triggers("ENABLE")


def _set_triggers(state: str) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite has no triggers: the model-level guard is all there is, and a queryset bypasses it
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's deferred FK checks would block ALTER TABLE
        for table in TRAIL_TABLES:
            cursor.execute(f"ALTER TABLE {table} {state} TRIGGER USER")


@contextlib.contextmanager
def as_non_superuser_with_every_privilege() -> Iterator[None]:
    """A role like a deployment's table owner on a managed database: every privilege on the trail, not superuser."""
    role = f"trail_tamperer_{connection.settings_dict['NAME']}"[:60]
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's deferred FK checks would block TRUNCATE itself
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
        for table in TRAIL_TABLES:
            cursor.execute(f'GRANT ALL ON {table} TO "{role}"')
        cursor.execute(f'SET ROLE "{role}"')
        try:
            yield
        finally:
            cursor.execute("RESET ROLE")


def test_a_trail_that_reaches_its_head_verifies(capsys):
    write(4)
    assert verify_chain() == (True, "4 entries, chain intact")
    call_command("verify_audit_log")
    assert "4 entries, chain intact" in capsys.readouterr().out


def test_a_deleted_last_entry_is_named_as_removed():
    entries = write(4)
    with as_table_owner():
        TrailEntry.objects.filter(pk=entries[-1].pk).delete()
    assert verify_chain() == (False, "the trail ends at entry #3 but its head says #4: entries were removed (truncated)")
    with pytest.raises(CommandError, match=r"ends at entry #3 but its head says #4: entries were removed"):
        call_command("verify_audit_log")


def test_an_emptied_trail_is_named_as_truncated():
    write(3)
    with as_table_owner():
        TrailEntry.objects.all().delete()
    assert verify_chain() == (False, "the trail is empty but its head says #3: entries were removed (truncated)")


def test_a_head_moved_back_is_named():
    entries = write(4)
    with as_table_owner():
        TrailHead.objects.filter(pk=1).update(seq=2, hash=entries[1].hash)
    assert verify_chain() == (False, "the trail goes on to entry #4 but its head says #2: the head was moved back")


def test_a_head_with_another_hash_is_named():
    write(2)
    with as_table_owner():
        TrailHead.objects.filter(pk=1).update(hash="f" * 64)
    ok, message = verify_chain()
    assert not ok and message == "entry #2's hash is not the head's hash: the trail or its head was rewritten"


def test_a_deleted_head_is_named():
    write(2)
    with as_table_owner():
        TrailHead.objects.all().delete()
    assert verify_chain() == (False, "the trail ends at entry #2 but has no head row: the head was deleted")


def test_the_trail_and_its_head_keep_growing_after_a_check():
    write(2)
    assert verify_chain()[0]
    write(1)
    assert verify_chain() == (True, "3 entries, chain intact")


@pytest.mark.parametrize("table", TRAIL_TABLES)
def test_postgresql_refuses_truncate_of_the_trail_and_its_head(db_vendor, table):
    if db_vendor != "postgresql":
        pytest.skip("the TRUNCATE trigger exists on PostgreSQL only; SQLite has no TRUNCATE")
    write(3)
    with as_non_superuser_with_every_privilege(), connection.cursor() as cursor:
        with pytest.raises(DatabaseError, match="the security trail cannot be truncated"), transaction.atomic():
            cursor.execute(f"TRUNCATE {table}")
    assert TrailEntry.objects.count() == 3
    assert verify_chain() == (True, "3 entries, chain intact")


@pytest.mark.parametrize("statement", [
    "UPDATE audits_auditchainhead SET seq = seq - 1",
    "UPDATE audits_auditchainhead SET hash = repeat('f', 64)",
    "DELETE FROM audits_auditchainhead",
])
def test_postgresql_head_only_moves_forward(db_vendor, statement):
    if db_vendor != "postgresql":
        pytest.skip("the head's trigger exists on PostgreSQL only")
    write(3)
    with pytest.raises(DatabaseError, match="head only moves forward"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(statement)
    assert TrailHead.objects.values_list("seq", flat=True).get(pk=1) == 3
    assert verify_chain()[0]
