"""Batches carrying categories training never saw, sent at once from several connections in different orders, are
all stored and counted (bench/ingest.py's mixed form got 503s: two batches updating the same unseen values' counters
in opposite orders deadlocked on PostgreSQL)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import connections
from django.test import Client

from monitor.models import QueryLog, UnseenCategory
from tests.factories import ingest_token, register_credit_pipeline
from tests.registry.test_mixed_type_pipelines import ROW

SENDERS, ROUNDS, VALUES = 6, 3, 12


@pytest.mark.django_db(transaction=True)
def test_batches_naming_the_same_unseen_categories_in_other_orders_are_all_stored_and_counted():
    model = register_credit_pipeline(slug="unseen-race", n=150)[0]
    token = ingest_token(model=model)
    start = threading.Barrier(SENDERS)
    answers: list[int] = []

    def send(sender: int) -> None:
        try:
            client = Client()
            order = np.random.default_rng(sender).permutation(VALUES)
            for round_ in range(ROUNDS):
                queries = [{"client_id": f"s{sender}", "features": {**ROW, "native_country": f"Atlantis-{value}",
                                                                   "occupation": f"Unseen-{(value + round_) % VALUES}"},
                            "output": [0.5, 0.5]} for value in order]
                start.wait(timeout=30)
                response = client.post(f"/api/v1/models/{model.slug}/queries", data={"queries": queries},
                                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
                answers.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [201] * (SENDERS * ROUNDS), answers
    assert QueryLog.objects.filter(model=model).count() == SENDERS * ROUNDS * VALUES
    counted = dict(UnseenCategory.objects.filter(model=model).values_list("value", "queries"))
    assert len(counted) == 2 * VALUES
    assert all(counted[f"Atlantis-{value}"] == SENDERS * ROUNDS for value in range(VALUES))
    assert sum(counted.values()) == 2 * SENDERS * ROUNDS * VALUES
