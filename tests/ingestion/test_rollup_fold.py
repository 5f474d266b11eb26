"""Rollups folded from the query log after ingestion: the same buckets the request used to write, each row counted
once (concurrent folds included), and pages, the API and /metrics that read them see every query logged so far
without a GET writing anything."""
from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.urls import reverse

from monitor.ingestion.rollups import fold_rollups
from monitor.models import ClientDayRollup, ModelHourRollup, QueryRollup, RollupWatermark
from tests.factories import ingest_token, make_model, make_user, query

URL = "/api/v1/models/credit/queries"


@pytest.fixture
def model():
    return make_model(slug="credit")


@pytest.mark.django_db
def test_a_fold_buckets_rows_by_utc_minute_day_and_hour(model, api_as):
    api = api_as(ingest_token(model=model))
    stamps = ["2026-11-28T23:59:59.999Z", "2026-11-28T23:59:00+00:00", "2026-11-29T00:00:00Z",
              "2026-11-29T01:30:00+01:00", "2026-11-29T00:30:10Z"]
    rows = [query(client_id="a" if i < 3 else "b", ts=ts) for i, ts in enumerate(stamps)]
    assert api.post(URL, {"queries": rows}).status_code == 201
    folded = fold_rollups(model)
    assert (folded.queries, RollupWatermark.objects.get(model=model).folded_to_id) == (5, folded.folded_to_id)
    minutes = sorted((c, m.astimezone(UTC).strftime("%d %H:%M"), n)
                     for c, m, n in QueryRollup.objects.values_list("client_id", "minute", "count"))
    assert minutes == [("a", "28 23:59", 2), ("a", "29 00:00", 1), ("b", "29 00:30", 2)]
    days = sorted(ClientDayRollup.objects.values_list("client_id", "day", "count"))
    assert days == [("a", date(2026, 11, 28), 2), ("a", date(2026, 11, 29), 1), ("b", date(2026, 11, 29), 2)]
    hours = sorted((h.astimezone(UTC).strftime("%d %H"), n) for h, n in ModelHourRollup.objects.values_list("hour", "count"))
    assert hours == [("28 23", 2), ("29 00", 3)]
    total = sum(QueryRollup.objects.values_list("confidence_sum", flat=True))
    assert total == pytest.approx(5 * 0.7, rel=1e-6)
    # More rows into a bucket already counted add to it.
    assert api.post(URL, {"queries": [query(client_id="b", ts="2026-11-29T00:30:59Z")]}).status_code == 201
    assert fold_rollups(model).queries == 1 and fold_rollups(model).queries == 0
    assert ClientDayRollup.objects.get(client_id="b").count == 3


@pytest.mark.django_db
def test_the_model_and_client_pages_count_queries_logged_a_moment_ago(model, api_as, client):
    api = api_as(ingest_token(model=model))
    now = datetime.now(UTC).isoformat()
    assert api.post(URL, {"queries": [query(client_id="fresh-client", ts=now) for _ in range(4)]}).status_code == 201
    client.force_login(make_user(role="viewer"))
    page = client.get(reverse("model-detail", kwargs={"slug": "credit"})).content.decode()
    assert "fresh-client" in page
    response = client.get(reverse("client-detail", kwargs={"slug": "credit"}), {"id": "fresh-client"})
    assert response.status_code == 200


@pytest.mark.django_db
def test_pages_api_and_metrics_count_unfolded_queries_without_writing(model, api_as, client):
    from django.test.utils import CaptureQueriesContext

    from tests.factories import user_token

    api = api_as(ingest_token(model=model))
    now = datetime.now(UTC).isoformat()
    rows = [query(client_id=f"c{i % 3}", ts=now) for i in range(7)]
    assert api.post(URL, {"queries": rows[:4]}).status_code == 201
    fold_rollups(model)  # part of the log folded, part not: the counts must add both, once
    assert api.post(URL, {"queries": rows[4:]}).status_code == 201
    client.force_login(make_user(role="viewer"))
    reader = api_as(user_token(role="viewer"))
    with CaptureQueriesContext(connection) as captured:
        summary = reader.get("/api/v1/models/credit").json()
        pages = [client.get(reverse(name, kwargs=kwargs), params) for name, kwargs, params in (
            ("overview", {}, {}), ("model-list", {}, {}), ("model-detail", {"slug": "credit"}, {}),
            ("client-detail", {"slug": "credit"}, {"id": "c0"}))]
        metrics = reader.get("/metrics").content.decode()
    assert (summary["queries_logged"], summary["clients"]) == (7, 3)
    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    assert 'mimonitor_queries_logged_total{model="credit"} 7.0' in metrics
    assert "c0" in pages[2].content.decode() and ">3<" in pages[3].content.decode().replace(" ", "")
    rollup_tables = [table._meta.db_table for table in (QueryRollup, ClientDayRollup, ModelHourRollup, RollupWatermark)]
    writes = [q["sql"] for q in captured.captured_queries
              if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
              and any(table in q["sql"] for table in rollup_tables)]
    assert writes == []
    assert sum(ModelHourRollup.objects.values_list("count", flat=True)) == 4  # nothing folded by the reads


@pytest.mark.django_db(transaction=True)
def test_folds_racing_on_two_connections_count_each_row_once(model, api_as, db_vendor):
    if db_vendor != "postgresql":
        pytest.skip("SQLite has a single writer")
    api = api_as(ingest_token(model=model))
    assert api.post(URL, {"queries": [query(client_id=f"c{i % 7}") for i in range(300)]}).status_code == 201
    start, results, errors = threading.Barrier(4), [], []

    def fold() -> None:
        try:
            start.wait()
            results.append(fold_rollups(model).queries)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sorted(results) == [0, 0, 0, 300]
    assert sum(ClientDayRollup.objects.values_list("count", flat=True)) == 300


@pytest.mark.django_db
def test_clients_are_counted_once_whether_folded_unfolded_or_both(model, api_as):
    """The client count adds the tail's clients that the rollups do not hold yet to the rollups' own: a client in
    both counts once, as the log's own distinct count says at every fold position."""
    from monitor.ingestion import counts
    from monitor.models import QueryLog

    def in_the_log() -> int:
        return QueryLog.objects.filter(model=model).values("client_id").distinct().count()

    api = api_as(ingest_token(model=model))
    now = datetime.now(UTC).isoformat()
    batches = [["a", "b", "a"], ["b", "c", "c"], ["d", "a"], []]
    for clients in batches:
        assert counts.client_count(model) == in_the_log()
        if clients:
            assert api.post(URL, {"queries": [query(client_id=c, ts=now) for c in clients]}).status_code == 201
            assert counts.client_count(model) == in_the_log()
        fold_rollups(model)
    assert counts.client_count(model) == 4
    assert api.post(URL, {"queries": [query(client_id="e", ts=now), query(client_id="b", ts=now)]}).status_code == 201
    assert counts.client_count(model) == 5  # "b" folded and in the tail, "e" only in the tail


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", ["queries_logged", "client_count", "client_queries"])
def test_a_fold_landing_between_the_watermark_read_and_the_count_is_counted_once(model, api_as, count):
    """Each count reads the fold watermark, then counts rollups plus the log past it in one statement that also reads
    the watermark again: a fold committed in between (here, run just before that statement) means another try."""
    from monitor.ingestion import counts

    api = api_as(ingest_token(model=model))
    now = datetime.now(UTC).isoformat()
    assert api.post(URL, {"queries": [query(client_id=f"c{i % 2}", ts=now) for i in range(6)]}).status_code == 201
    folded = {"done": False}

    def fold_before_the_count(execute, sql, params, many, context):
        if not folded["done"] and ("SUM(count)" in sql or "DISTINCT" in sql):  # the counting statement
            folded["done"] = True
            fold_rollups(model)
        return execute(sql, params, many, context)

    read = {"queries_logged": lambda: counts.queries_logged(model), "client_count": lambda: counts.client_count(model),
            "client_queries": lambda: counts.client_queries(model, "c0")}[count]
    with connection.execute_wrapper(fold_before_the_count):
        value = read()
    assert folded["done"], "the fold did not run between the two reads"
    assert value == {"queries_logged": 6, "client_count": 2, "client_queries": 3}[count]
    assert sum(ModelHourRollup.objects.values_list("count", flat=True)) == 6
