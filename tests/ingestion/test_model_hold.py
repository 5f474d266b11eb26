"""The query log's foreign key to its model is gone on PostgreSQL (checked once per row, a third of a COPY's cost);
store_queries holds the model's row once per batch instead (monitor.ingestion.store.hold_model). A batch for a
deleted model is refused with nothing stored, and a model's delete waits for a batch being written, then takes its
rows with the others (the foreign key refused such a delete; without the wait the batch's rows were left behind)."""
from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import IngestError, IngestRefusal, validate_queries
from monitor.models import QueryLog, RegisteredModel
from tests.factories import query


def a_batch(model: RegisteredModel, n: int = 3):
    return validate_queries([query(client_id=f"c{i}", request_id=f"r{i}") for i in range(n)], model=model,
                            max_queries=100)


def stored_for(model_id: int) -> int:
    with connection.cursor() as cursor:  # the table itself: no join to a model that may be gone
        cursor.execute(f"SELECT count(*) FROM {QueryLog._meta.db_table} WHERE model_id = %s", [model_id])  # noqa: S608
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_batch_for_a_model_deleted_after_its_lookup_is_refused_and_stores_nothing(model):
    batch = a_batch(model)
    RegisteredModel.objects.filter(pk=model.pk).delete()
    with pytest.raises(IngestError) as refused:
        store_queries(model, batch)
    assert refused.value.refusal == IngestRefusal.MODEL_GONE
    assert repr(model.slug) in refused.value.message
    assert stored_for(model.pk) == 0


def test_every_refusal_has_an_http_status_and_a_model_that_is_gone_is_404():
    # The race cannot be staged through the API (deleting the model takes its tokens too): the mapping is checked.
    from monitor.api.errors import INGEST_STATUS

    assert set(INGEST_STATUS) == set(IngestRefusal)
    assert INGEST_STATUS[IngestRefusal.MODEL_GONE] == 404


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_log_has_no_foreign_key_and_a_batch_in_flight_keeps_its_model_from_being_deleted(model, db_vendor):
    if db_vendor != "postgresql":
        pytest.skip("SQLite keeps the foreign key its table was made with, and has one writer")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'monitor_querylog'::regclass AND contype = 'f'")
        assert cursor.fetchone()[0] == 0
    other = connections.create_connection("default")
    try:
        with transaction.atomic():
            assert store_queries(model, a_batch(model)).accepted == 3
            # The batch has not committed: deleting its model (a row lock FOR UPDATE) must wait for it.
            with other.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
                with pytest.raises(OperationalError, match="lock timeout"):
                    cursor.execute("DELETE FROM monitor_registeredmodel WHERE id = %s", [model.pk])
        # Committed: the lock is gone, and nothing else held the row.
        with other.cursor() as cursor:
            cursor.execute("SELECT 1 FROM monitor_registeredmodel WHERE id = %s FOR UPDATE NOWAIT", [model.pk])
            assert cursor.fetchone() == (1,)
    finally:
        other.close()
    assert stored_for(model.pk) == 3


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_deleting_a_model_waits_for_a_batch_in_flight_and_takes_its_rows_too(model, db_vendor):
    if db_vendor != "postgresql":
        pytest.skip("SQLite keeps the foreign key its table was made with, and has one writer")
    finished, failures = threading.Event(), []

    def delete() -> None:
        try:
            RegisteredModel.objects.get(pk=model.pk).delete()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connections.close_all()
            finished.set()

    deleter = threading.Thread(target=delete)
    with transaction.atomic():
        assert store_queries(model, a_batch(model)).accepted == 3
        deleter.start()
        assert not finished.wait(1.0)  # the delete waits while the batch is uncommitted
    deleter.join(timeout=60)
    assert finished.is_set() and not failures, failures
    assert not RegisteredModel.objects.filter(pk=model.pk).exists()
    assert stored_for(model.pk) == 0
