"""A calibration window too large to read whole is sampled by client, and a sharded scan splits its clients, the same
way on SQLite as on PostgreSQL (run this file on both).

PostgreSQL picks a client's shard in SQL with hashtext(client_id); SQLite used CRC-32 in Python, so the same log was
calibrated on another sample of clients on each database, and a window's shard rows were capped at 1.25 × the cap on
PostgreSQL only. SQLite now computes PostgreSQL's hashtext itself and stops where PostgreSQL's LIMIT stops.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from monitor.detection.log_reader import client_shard, load_queries, load_window, postgres_hashtext
from monitor.ingestion.store import safe_high_water, store_queries
from monitor.ingestion.validate import QueryBatch
from monitor.models import QueryLog
from tests.factories import make_model

pytestmark = pytest.mark.django_db

# hashtext(text) as PostgreSQL (15) answers it (int4): the empty string, a whole 12-byte block, ids of each shape.
HASHTEXT = {"": -1477818771, "aaaaaaaaaaaa": 873433057, "client-00001": 399555592,
            "attacker-noise-sweep": 1792866361}
IDS = ["", "a", "aaaaaaaaaaaa", "client-00001", "attacker-noise-sweep", "é", "client ☃ 𝄞", "x" * 11, "y" * 13,
       "z" * 24, "model/7:client#42", *(f"client-{i:05d}" for i in range(200))]


def test_sqlite_computes_the_hashtext_postgresql_shards_clients_by():
    for text, value in HASHTEXT.items():
        assert postgres_hashtext(text) == value & 0xFFFFFFFF, text
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT t, hashtext(t) FROM unnest(%s::text[]) AS t", [IDS])
            rows = cursor.fetchall()
        assert [postgres_hashtext(text) for text, _ in rows] == [value & 0xFFFFFFFF for _, value in rows]


def store_owners(model, owners: list[str]) -> list[tuple[int, str]]:
    """One query of each client in `owners`, in that order a second apart; returns (id, client) of every row."""
    rng = np.random.default_rng(0)
    start = datetime(2026, 12, 3, tzinfo=UTC)
    n, d, k = len(owners), model.n_features, len(model.class_labels)
    store_queries(model, QueryBatch(client_ids=owners, timestamps=[start + timedelta(seconds=i) for i in range(n)],
                                    features=rng.normal(size=(n, d)).astype(np.float32),
                                    outputs=rng.dirichlet(np.ones(k), n).astype(np.float32), request_ids=[None] * n))
    return list(QueryLog.objects.filter(model=model).order_by("id").values_list("id", "client_id"))


def test_a_window_over_the_cap_is_the_same_client_sample_on_both_databases():
    model = make_model()
    clients = [f"client-{i:05d}" for i in range(40)]
    heavy = next(client for client in clients if client_shard(client, 5) == 0)
    rows = store_owners(model, clients * 10 + [heavy] * 100)  # 500 queries, a fifth sampled at a cap of 100
    window, reached, sample = load_window(model, from_id=0, upto=safe_high_water(model), exclude_clients=(), cap=100)
    assert sample == (0, 5)
    # Shard 0's queries in id order, at most 1.25 × the cap of them; the window reaches the last one read.
    shard = [query_id for query_id, client in rows if client_shard(client, 5) == 0]
    assert len(shard) > 125 and window.query_ids.tolist() == shard[:125] and reached == shard[124]
    assert set(window.client_ids.tolist()) == {client for client in clients if client_shard(client, 5) == 0}


def test_a_sharded_chunk_holds_as_many_of_its_shards_queries_on_both_databases():
    model = make_model()
    rows = store_owners(model, [f"client-{i:05d}" for i in range(12)] * 20)  # 5, 1 and 6 clients in shards 0-2
    high = safe_high_water(model)
    shard = [query_id for query_id, client in rows if client_shard(client, 3) == 0]
    batch, reached = load_queries(model, after_id=0, upto_id=high, limit=25, shard=(0, 3))
    assert batch.query_ids.tolist() == shard[:25] and reached == shard[24]
    rest, reached = load_queries(model, after_id=reached, upto_id=high, limit=1000, shard=(0, 3))
    assert rest.query_ids.tolist() == shard[25:] and reached == high
