"""Every way a client retries a batch, on the database CI runs (PostgreSQL) as well as SQLite: the same batch,
a superset, a subset, a mix of stored and new rows, and the same batch from two connections at once. Each
answers 201 with the right counts, stores each request_id once and never answers 500."""
from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client

from monitor.ingestion.rollups import fold_rollups
from monitor.models import ClientDayRollup, QueryLog
from tests.factories import ingest_token, query

URL = "/api/v1/models/credit/queries"


def rows(start: int, stop: int, *, client_id: str = "retrier") -> list[dict]:
    return [query(request_id=f"r-{i}", client_id=client_id) for i in range(start, stop)]


def stored_ids(model) -> list[str]:
    return sorted(QueryLog.objects.filter(model=model).values_list("request_id", flat=True))


def expect_ids(start: int, stop: int) -> list[str]:
    return sorted(f"r-{i}" for i in range(start, stop))


def client_count(model) -> int:
    fold_rollups(model)
    return sum(ClientDayRollup.objects.filter(model=model).values_list("count", flat=True))


@pytest.fixture
def api(model, api_as):
    return api_as(ingest_token(model=model))


def post(api, batch: list[dict]) -> tuple[int, dict]:
    response = api.post(URL, {"queries": batch})
    return response.status_code, response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(("first", "retry", "answer", "total"), [
    ((0, 5), (0, 5), {"accepted": 0, "duplicates": 5}, 5),      # the same batch again
    ((0, 5), (0, 8), {"accepted": 3, "duplicates": 5}, 8),      # a superset: the stored rows plus new ones
    ((0, 8), (2, 5), {"accepted": 0, "duplicates": 3}, 8),      # a subset
    ((0, 5), (3, 9), {"accepted": 4, "duplicates": 2}, 9),      # overlapping: some stored, some new
], ids=["same", "superset", "subset", "overlap"])
def test_a_retried_batch_stores_each_request_id_once(api, model, first, retry, answer, total):
    assert post(api, rows(*first)) == (201, {"accepted": first[1] - first[0], "duplicates": 0})
    assert post(api, rows(*retry)) == (201, answer)
    assert stored_ids(model) == expect_ids(0, total)
    assert client_count(model) == total  # the rollups count each stored row once too


@pytest.mark.django_db
def test_rows_without_request_id_in_a_retried_batch_are_stored_again(api, model):
    """No request_id, no idempotency: the client did not ask for it, so each send is a new query."""
    batch = rows(0, 3) + [query(client_id="anonymous")]
    assert post(api, batch) == (201, {"accepted": 4, "duplicates": 0})
    assert post(api, batch) == (201, {"accepted": 1, "duplicates": 3})
    assert QueryLog.objects.filter(model=model).count() == 5


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_from_two_connections_at_once_is_stored_once(model, db_vendor):
    """Two workers receive the same retry at the same moment; each has its own database connection."""
    token = ingest_token(model=model)
    batch = {"queries": rows(0, 200)}
    start = threading.Barrier(2)
    answers: list[tuple[int, dict]] = []

    def send() -> None:
        try:
            client = Client()
            start.wait(timeout=10)
            response = client.post(URL, data=batch, content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {token}")
            answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(status for status, _ in answers) == [201, 201], answers
    assert sorted((a["accepted"], a["duplicates"]) for _, a in answers) == [(0, 200), (200, 0)], answers
    assert stored_ids(model) == expect_ids(0, 200)
    assert client_count(model) == 200


@pytest.mark.django_db
def test_a_retry_stamped_on_another_day_is_still_recognised_within_the_window(api, model, settings):
    """First sent with yesterday's timestamp, retried without one (the server stamps today): on PostgreSQL the
    two land in different day partitions, so within INGEST_RETRY_WINDOW_HOURS the batch is looked up first."""
    from datetime import timedelta

    from django.utils import timezone

    settings.INGEST_RETRY_WINDOW_HOURS = 48.0  # every moment of the day is "just after midnight"
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert post(api, [query(request_id="late-1", ts=yesterday), query(request_id="late-2", ts=yesterday)]) == (
        201, {"accepted": 2, "duplicates": 0})
    assert post(api, [query(request_id="late-1"), query(request_id="late-3")]) == (201, {"accepted": 1, "duplicates": 1})
    assert sorted(QueryLog.objects.filter(model=model).values_list("request_id", flat=True)) == ["late-1", "late-2", "late-3"]
