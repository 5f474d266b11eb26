"""Months of traffic: the query log partitioned by model and day on PostgreSQL, each model's retention enforced
by whole partitions (rows on SQLite), history kept in the rollups, nothing unscanned dropped, every drop in the
security trail; retention_days set through the API by an admin."""
from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from monitor.ingestion import partitions, retention
from monitor.ingestion.rollups import fold_rollups
from monitor.models import ClientDayRollup, DetectorState, ModelHourRollup, QueryLog
from monitor.trail.models import TrailEntry, verify_chain
from tests.factories import ingest_token, make_model, query, user_token

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def send(api, slug: str, days_ago: list[int], *, per_day: int = 3) -> None:
    rows = [query(client_id=f"c{d}", ts=(NOW - timedelta(days=d, minutes=m)).isoformat(), request_id=f"{slug}-{d}-{m}")
            for d in days_ago for m in range(per_day)]
    response = api.post(f"/api/v1/models/{slug}/queries", {"queries": rows})
    assert response.status_code == 201, response.content


def days_stored(model) -> list[int]:
    today = NOW.astimezone(UTC).date()
    return sorted({(today - ts.astimezone(UTC).date()).days
                   for ts in QueryLog.objects.filter(model=model).values_list("ts", flat=True)})


def scanned_all(model) -> None:
    """Move the model's scan watermark past every stored query, as a scan would."""
    top = QueryLog.objects.filter(model=model).order_by("-id").values_list("id", flat=True).first() or 0
    DetectorState.objects.update_or_create(model=model, defaults={"watermark_id": top, "fingerprint_key": b"k"})


@pytest.fixture
def credit(api_as):
    model = make_model(slug="credit")
    model.retention_days = 30
    model.save()
    api = api_as(ingest_token(model=model))
    send(api, "credit", [0, 1, 2, 5, 8, 12])
    retention.maintain_partitions()  # DEFAULT's rows moved into day partitions (PostgreSQL)
    return model


def test_retention_counts_rows_into_the_rollups_before_it_drops_them(credit):
    """Rollups are folded from the log after ingestion; rows about to be dropped are folded first."""
    logged = QueryLog.objects.filter(model=credit).count()
    assert not ClientDayRollup.objects.filter(model=credit).exists()
    scanned_all(credit)
    credit.retention_days = 4
    credit.save()
    result = retention.enforce(credit, now=NOW)
    assert result.rows_dropped == 9
    assert sum(ClientDayRollup.objects.filter(model=credit).values_list("count", flat=True)) == logged
    assert sum(ModelHourRollup.objects.filter(model=credit).values_list("count", flat=True)) == logged


def test_expired_days_go_whole_and_the_history_stays(credit, db_vendor):
    fold_rollups(credit)
    history = sorted(ClientDayRollup.objects.filter(model=credit).values_list("day", "count"))
    hours = sum(ModelHourRollup.objects.filter(model=credit).values_list("count", flat=True))
    if db_vendor == "postgresql":
        assert {p.day for p in partitions.partitions(credit.pk)} >= {
            (NOW - timedelta(days=d)).astimezone(UTC).date() for d in (0, 1, 2, 5, 8, 12)}
    scanned_all(credit)
    credit.retention_days = 4
    credit.save()
    result = retention.enforce(credit, now=NOW)
    assert days_stored(credit) == [0, 1, 2]
    assert result.rows_dropped == 9 and result.dropped
    assert not [e for e in result.expired if e.waiting]
    if db_vendor == "postgresql":
        kept = {p.day for p in partitions.partitions(credit.pk)}
        assert all(day >= retention.cutoff_for(credit, NOW).date() for day in kept), kept
        assert all(e.partition for e in result.expired), result.expired  # whole partitions, not deleted rows
    # The dashboards' history outlives the raw rows.
    assert sorted(ClientDayRollup.objects.filter(model=credit).values_list("day", "count")) == history
    assert sum(ModelHourRollup.objects.filter(model=credit).values_list("count", flat=True)) == hours
    logged = list(TrailEntry.objects.filter(action="queries.expired").order_by("seq"))
    assert sum(e.after["rows"] for e in logged) == 9 and {e.after["model"] for e in logged} == {"credit"}
    assert verify_chain()[0]


def test_retention_waits_for_what_the_scanner_has_not_read(credit):
    DetectorState.objects.update_or_create(model=credit, defaults={"watermark_id": 0, "fingerprint_key": b"k"})
    credit.retention_days = 4
    credit.save()
    waiting = retention.enforce(credit, now=NOW)
    assert days_stored(credit) == [0, 1, 2, 5, 8, 12]
    assert waiting.expired and all("scanner has not read it yet" in e.waiting for e in waiting.expired)
    assert any("waiting:" in line for line in waiting.lines())
    assert not TrailEntry.objects.filter(action="queries.expired").exists()
    scanned_all(credit)
    assert retention.enforce(credit, now=NOW).rows_dropped == 9
    assert days_stored(credit) == [0, 1, 2]


def test_one_models_retention_leaves_the_others_rows(credit, api_as):
    other = make_model(slug="other")
    send(api_as(ingest_token(model=other)), "other", [5, 8])
    retention.maintain_partitions()
    scanned_all(credit)
    scanned_all(other)
    credit.retention_days = 4
    credit.save()
    retention.enforce_all(now=NOW)
    assert days_stored(credit) == [0, 1, 2]
    assert days_stored(other) == [5, 8]  # 90 days by default


def test_the_command_prints_what_it_drops_and_dry_run_drops_nothing(credit):
    scanned_all(credit)
    credit.retention_days = 4
    credit.save()
    out = io.StringIO()
    call_command("enforce_retention", "--model", "credit", "--dry-run", stdout=out)
    assert "would drop" in out.getvalue() and "would drop 9 rows in all" in out.getvalue(), out.getvalue()
    assert days_stored(credit) == [0, 1, 2, 5, 8, 12]
    out = io.StringIO()
    call_command("enforce_retention", "--model", "credit", stdout=out)
    assert "dropped 9 rows in all" in out.getvalue(), out.getvalue()
    assert days_stored(credit) == [0, 1, 2]
    out = io.StringIO()
    call_command("enforce_retention", stdout=out)
    assert "credit: keeps 4 days" in out.getvalue() and "nothing has expired" in out.getvalue()
    with pytest.raises(CommandError, match="no model with slug 'nope'"):
        call_command("enforce_retention", "--model", "nope")


def test_queries_are_routed_to_their_model_day_partition(credit, db_vendor, api_as):
    if db_vendor != "postgresql":
        pytest.skip("SQLite keeps one plain table")
    far = (NOW + timedelta(minutes=1)).astimezone(UTC).date()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM monitor_querylog WHERE model_id = %s GROUP BY 1",
                       [credit.pk])
        where = dict(cursor.fetchall())
    assert where.get(partitions.DEFAULT, 0) == 0, where
    assert where[partitions.partition_name(credit.pk, far)] == 3
    # A day with no partition yet (a backfill) lands in DEFAULT and the hourly task gives it one.
    send(api_as(ingest_token(model=credit)), "credit", [20])
    assert partitions.default_days() == [(credit.pk, (NOW - timedelta(days=20)).astimezone(UTC).date(), 3)]
    retention.maintain_partitions()
    assert partitions.default_days() == []
    assert days_stored(credit) == [0, 1, 2, 5, 8, 12, 20]


@pytest.mark.parametrize(("role", "body", "status"), [
    ("admin", {"retention_days": 14}, 200),
    ("security", {"retention_days": 14}, 403),
    ("viewer", {"retention_days": 0}, 403),
    ("admin", {"retention_days": 0}, 400),
    ("admin", {"retention_days": 4000}, 400),
    ("admin", {"retention_days": "two weeks"}, 400),
    ("admin", {"retention": 14}, 400),
    ("admin", {}, 400),
])
def test_an_admin_sets_retention_through_the_api(model, api_as, role, body, status):
    api = api_as(user_token(role=role))
    response = api.client.patch("/api/v1/models/credit", data=body, content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == status, response.content
    model.refresh_from_db()
    if status == 200:
        assert response.json()["retention_days"] == 14 == model.retention_days
        entry = TrailEntry.objects.get(action="model.updated")
        assert (entry.before, entry.after) == ({"retention_days": 90}, {"retention_days": 14})
    else:
        assert model.retention_days == 90  # untouched
        assert response.json()["error"]
    if status == 400:
        assert response.json()["details"], response.json()


def test_patch_names_an_unknown_model(api_as):
    api = api_as(user_token(role="admin"))
    response = api.client.patch("/api/v1/models/nope", data={"retention_days": 3}, content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_a_new_model_gets_the_configured_retention(settings):
    settings.QUERY_RETENTION_DAYS = 21
    assert make_model(slug="fresh").retention_days == 21


def test_cutoff_is_whole_days(credit):
    credit.retention_days = 2
    assert retention.cutoff_for(credit, datetime(2026, 12, 2, 15, 30, tzinfo=UTC)) == datetime(2026, 11, 30, tzinfo=UTC)


def test_minute_rollups_expire_with_retention_but_not_within_the_client_pages_month(credit):
    """Day and hour rollups keep the history; the client-minute rollup (as large as the log) goes too, but
    never within MINUTE_ROLLUP_MIN_DAYS."""
    from monitor.models import QueryRollup

    scanned_all(credit)
    fold_rollups(credit)
    credit.retention_days = 4
    credit.save()
    assert QueryRollup.objects.filter(model=credit, minute__lt=NOW - timedelta(days=9)).exists()
    retention.enforce(credit, now=NOW)
    assert QueryRollup.objects.filter(model=credit, minute__lt=NOW - timedelta(days=9)).exists()  # within 30 days
    days_before = sorted(ClientDayRollup.objects.filter(model=credit).values_list("day", "count"))
    later = NOW + timedelta(days=25)  # the minutes of days 8 and 12 are now over 30 whole days old
    result = retention.enforce(credit, now=later)
    assert result.minute_rollups == 6
    assert not QueryRollup.objects.filter(model=credit, minute__lt=result.minute_rollup_cutoff).exists()
    assert QueryRollup.objects.filter(model=credit).count() == 12
    assert "client-minute rollup rows" in "\n".join(result.lines())
    assert sorted(ClientDayRollup.objects.filter(model=credit).values_list("day", "count")) == days_before
    assert TrailEntry.objects.get(action="rollups.expired").after["rows"] == 6


def test_an_admin_sets_retention_in_the_django_admin_and_the_trail_records_it(client, model):
    import html
    import re

    from tests.factories import make_user

    admin_user = make_user(role="admin")
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    url = f"/admin/monitor/registeredmodel/{model.pk}/change/"
    page = client.get(url).content.decode()
    form = {html.unescape(name): html.unescape(value) for name, value in
            re.findall(r'<input[^>]*?name="([^"]+)"[^>]*?value="([^"]*)"', page)}
    form.update({key: value for key, value in re.findall(
        r'<select[^>]*name="([^"]+)"[^>]*>.*?<option value="([^"]*)" selected', page, flags=re.S)})
    for name in ("_addanother", "_continue", "_save"):
        form.pop(name, None)
    assert "retention_days" in form, sorted(form)
    response = client.post(url, {**form, "retention_days": "0"})
    assert response.status_code == 200 and "greater than or equal to 1" in response.content.decode()
    response = client.post(url, {**form, "retention_days": "21"})
    assert response.status_code == 302, response.content.decode()[:2000]
    model.refresh_from_db()
    assert model.retention_days == 21
    entry = TrailEntry.objects.get(action="model.updated")
    assert (entry.before, entry.after, entry.actor_name) == ({"retention_days": 90}, {"retention_days": 21}, admin_user.username)
