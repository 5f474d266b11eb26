"""Migrations on a database that already holds data: the security trail moved from the audits app to
monitor.trail (monitor 0006 / audits 0003, state only). A deployment's existing chain must come through whole,
still verify, and keep growing from where it stopped."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from monitor.trail.chain import GENESIS, entry_hash

BEFORE_MOVE = [("monitor", "0005_token_rate_limit"), ("audits", "0002_audit_log_append_only")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_an_existing_trail_survives_the_move_and_keeps_chaining():
    old = migrate(BEFORE_MOVE)
    try:
        Entry = old.get_model("audits", "AuditLogEntry")
        Head = old.get_model("audits", "AuditChainHead")
        Model = old.get_model("monitor", "RegisteredModel")
        Policy = old.get_model("audits", "AuditPolicy")
        start = datetime(2026, 6, 1, tzinfo=UTC)
        previous = GENESIS
        for seq in range(1, 6):
            payload = {"seq": seq, "at": (start + timedelta(minutes=seq)).isoformat(), "actor": "alice",
                       "ip": "10.0.0.1", "action": "login" if seq % 2 else "alert.acknowledged",
                       "object_type": "", "object_id": "", "before": None, "after": {"n": seq}}
            digest = entry_hash(previous, payload)
            Entry.objects.create(seq=seq, at=start + timedelta(minutes=seq), actor_name="alice", ip="10.0.0.1",
                                 action=payload["action"], after={"n": seq}, prev_hash=previous, hash=digest)
            previous = digest
        Head.objects.create(pk=1, seq=5, hash=previous)
        model = Model.objects.create(slug="old", name="Old", source="sklearn", label_column="label")
        Policy.objects.create(model=model, cadence_hours=6, attacks=["loss", "rmia"], max_tpr_at_1pct_fpr=0.05)
    finally:
        migrate(latest())

    from audits.models import AuditPolicy
    from monitor.models import RegisteredModel
    from monitor.trail.models import TrailEntry, TrailHead, verify_chain

    assert list(TrailEntry.objects.values_list("seq", "action")) == [
        (1, "login"), (2, "alert.acknowledged"), (3, "login"), (4, "alert.acknowledged"), (5, "login")]
    assert verify_chain() == (True, "5 entries, chain intact")
    assert TrailHead.objects.get(pk=1).hash == previous

    added = TrailEntry.record(action="evidence.exported", actor_name="carol")
    assert (added.seq, added.prev_hash) == (6, previous)
    assert verify_chain() == (True, "6 entries, chain intact")

    policy = AuditPolicy.objects.for_model(RegisteredModel.objects.get(slug="old"))
    assert (policy.pk is not None, policy.cadence_hours, policy.attacks) == (True, 6, ["loss", "rmia"])


@pytest.mark.django_db(transaction=True)
def test_an_existing_query_log_is_partitioned_in_place(db_vendor, api_as):
    """monitor 0007: rows logged before it keep their ids, land in their model-day partitions (PostgreSQL), and
    a client retrying one of them afterwards is still told it is a duplicate."""
    old = migrate([("monitor", "0006_trail_from_audits")])
    try:
        Model = old.get_model("monitor", "RegisteredModel")
        Log = old.get_model("monitor", "QueryLog")
        models = [Model.objects.create(slug=slug, name=slug, source="skops", label_column="label",
                                       feature_names=["a", "b", "c", "d"], class_labels=["0", "1"])
                  for slug in ("first", "second")]
        now = datetime.now(UTC)
        for model in models:
            for days_ago in (0, 3, 40):
                for i in range(4):
                    Log.objects.create(model=model, client_id=f"c{i}", ts=now - timedelta(days=days_ago, minutes=i),
                                       features=b"\0" * 16, outputs=b"\0" * 8, label=0, confidence=0.5,
                                       request_id=f"{model.slug}-{days_ago}-{i}")
        before = sorted(Log.objects.values_list("id", "model__slug", "request_id", "ts"))
    finally:
        migrate(latest())

    from monitor.ingestion import partitions
    from monitor.models import QueryLog, RegisteredModel
    from tests.factories import ingest_token, query

    assert sorted(QueryLog.objects.values_list("id", "model__slug", "request_id", "ts")) == before
    first = RegisteredModel.objects.get(slug="first")
    assert first.retention_days == 90
    if db_vendor == "postgresql":
        days = {p.day for p in partitions.partitions(first.pk)}
        assert {(now - timedelta(days=d)).date() for d in (0, 3, 40)} <= days, days
        assert partitions.default_days() == []
    api = api_as(ingest_token(model=first))
    retry = [query(request_id="first-3-1", ts=(now - timedelta(days=3, minutes=1)).isoformat()),
             query(request_id="first-0-2"), query(request_id="new-one")]
    response = api.post("/api/v1/models/first/queries", {"queries": retry})
    assert (response.status_code, response.json()) == (201, {"accepted": 1, "duplicates": 2})
    assert QueryLog.objects.get(request_id="new-one").id > max(row[0] for row in before)


STATE_AS_ONE_DOCUMENT = {
    "volume": {"clients": {"alice": {"window": 5, "count": 3, "mean": 2.5, "windows": 9, "last": 1_800_000_000.0}}},
    "near_duplicate_sweep": {
        "counter": {"alice": {"entries": [[0, 1, 2, 3, 4]], "last": 1_800_000_100.0}},
        "history": {"alice": {"z": "AAAA", "t": [1_800_000_050.0]}, "bob": {"z": "AAAA", "t": [1_799_999_000.0]}},
        "pending": {"bob": {"n": 4, "x": 1, "seen": [7], "last": 1_799_999_000.0}},
    },
    "account_linking": {"window": 20833, "clients": {"alice": {"sketch": [11, 12]}, "bob": {"sketch": [13]}}},
}


@pytest.mark.django_db(transaction=True)
def test_the_scanners_state_document_becomes_one_row_per_client_and_back():
    """monitor 0008: an existing model's carried state is split into per-(detector, client) rows, and joined
    again when the migration is reversed; nothing is lost either way."""
    before = [("monitor", "0007_partitioned_query_log")]
    old = migrate(before)
    try:
        Model = old.get_model("monitor", "RegisteredModel")
        State = old.get_model("monitor", "DetectorState")
        model = Model.objects.create(slug="carried", name="Carried", source="sklearn", label_column="label")
        State.objects.create(model=model, fingerprint_key=b"k" * 32, watermark_id=77, state=STATE_AS_ONE_DOCUMENT)
    finally:
        new = migrate(latest())
    Rows = new.get_model("monitor", "ScannerState")
    rows = {(r.detector, r.client_id): (json.loads(bytes(r.data)), r.seen_at)
            for r in Rows.objects.filter(model__slug="carried")}
    assert rows[("volume", "alice")] == ({"clients": STATE_AS_ONE_DOCUMENT["volume"]["clients"]["alice"]},
                                         1_800_000_000.0)
    alice_sweep, seen = rows[("near_duplicate_sweep", "alice")]
    assert set(alice_sweep) == {"counter", "history"} and seen == 1_800_000_100.0
    assert set(rows[("near_duplicate_sweep", "bob")][0]) == {"history", "pending"}
    assert rows[("account_linking", "bob")][0] == {"clients": {"sketch": [13], "window": 20833}}
    assert len(rows) == 5

    reversed_apps = migrate(before)
    try:
        state = reversed_apps.get_model("monitor", "DetectorState").objects.get(model__slug="carried")
        assert state.state == STATE_AS_ONE_DOCUMENT and state.watermark_id == 77
    finally:
        migrate(latest())


@pytest.mark.django_db(transaction=True)
def test_rows_rolled_up_before_the_fold_existed_are_not_counted_twice():
    """monitor 0009: rows logged (and rolled up in the request) before it are where the fold starts."""
    old = migrate([("monitor", "0008_scanner_state_rows")])
    try:
        Model = old.get_model("monitor", "RegisteredModel")
        Log = old.get_model("monitor", "QueryLog")
        Day = old.get_model("monitor", "ClientDayRollup")
        model = Model.objects.create(slug="rolled", name="Rolled", source="sklearn", label_column="label")
        now = datetime.now(UTC)
        Log.objects.bulk_create([Log(model=model, client_id="c", ts=now, features=b"\0" * 16, outputs=b"\0" * 8,
                                     label=0, confidence=0.5, request_id=f"r{i}") for i in range(3)])
        Day.objects.create(model=model, client_id="c", day=now.date(), count=3, confidence_sum=1.5)
    finally:
        migrate(latest())
    from monitor.ingestion.rollups import fold_rollups
    from monitor.models import ClientDayRollup, RegisteredModel

    model = RegisteredModel.objects.get(slug="rolled")
    assert fold_rollups(model).queries == 0
    assert ClientDayRollup.objects.get(model=model).count == 3


@pytest.mark.django_db(transaction=True)
def test_client_ids_keep_their_rows_when_every_column_takes_one_length_and_back():
    """monitor 0016: the scanner's state and findings took client ids of 200 characters, the rest 128; every column
    now takes CLIENT_ID_MAX_LENGTH (ingestion never let a longer one in). Rows survive both ways."""
    before = [("monitor", "0015_false_alarm_budget")]
    old = migrate(before)
    longest = "c" * 128
    try:
        Model = old.get_model("monitor", "RegisteredModel")
        model = Model.objects.create(slug="ids", name="Ids", source="sklearn", label_column="label")
        old.get_model("monitor", "ScannerState").objects.create(model=model, detector="volume", client_id=longest,
                                                               data=b"{}", seen_at=1.0)
        old.get_model("monitor", "DetectorFinding").objects.create(
            model=model, detector="volume", client_id=longest, score=3.0, severity="warning", evidence={},
            range_start=1, range_end=2)
    finally:
        new = migrate(latest())
    assert new.get_model("monitor", "ScannerState").objects.get(model__slug="ids").client_id == longest
    finding = new.get_model("monitor", "DetectorFinding").objects.get(model__slug="ids")
    assert (finding.client_id, finding.severity) == (longest, "warning")
    reversed_apps = migrate(before)
    try:
        assert reversed_apps.get_model("monitor", "ScannerState").objects.get(model__slug="ids").client_id == longest
    finally:
        migrate(latest())


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    """A model change without its migration (or a field whose definition changes by itself, as a help text built
    from the attack catalogue once did) fails here, not on the next developer's makemigrations."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        assert not exc.code, f"models differ from their migrations:\n{out.getvalue()}"
