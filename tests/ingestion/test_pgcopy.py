"""The binary COPY payload built with numpy: PostgreSQL reads back exactly what was sent, text and NULLs included."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from monitor.ingestion.pgcopy import COLUMNS, copy_payload
from monitor.ingestion.vectors import decode_vectors, encode_vectors


@pytest.mark.django_db
def test_postgresql_reads_back_every_field_of_the_numpy_built_payload(db_vendor):
    if db_vendor != "postgresql":
        pytest.skip("binary COPY is PostgreSQL's")
    rng = np.random.default_rng(0)
    n = 7
    features = encode_vectors(rng.normal(size=(n, 5)))
    outputs = encode_vectors(rng.uniform(size=(n, 3)))
    stamps = [datetime(2026, 12, 2, 0, 0, tzinfo=UTC) + timedelta(microseconds=int(us))
              for us in rng.integers(0, 86_400 * 10**6, size=n)]
    stamps[0] = datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)  # before PostgreSQL's epoch
    clients = ["a", "client-ü-β", "x" * 200, "c", "顧客", "d", "e"]
    requests = ["r1", None, "r-ü", None, "y" * 128, "", "r7"]
    labels = np.array([0, 1, 2, 1, 0, 2, 32767], dtype=np.int64)
    confidences = np.array([0.5, 1.0, 0.0, 1e-300, 0.25, 0.999, 0.1])
    micros = np.array([(s - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) for s in stamps])
    payload = copy_payload(model_id=42, micros=micros, features=features, outputs=outputs, labels=labels,
                           confidences=confidences, client_ids=clients, request_ids=requests)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE copied (model_id bigint, ts timestamptz, features bytea, outputs bytea, "
                       "label smallint, confidence float8, client_id varchar(200), request_id varchar(128))")
        with cursor.cursor.copy(f"COPY copied ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM copied")  # noqa: S608 (our own column names)  # noqa: S608 (our column names)
        back = cursor.fetchall()
    assert len(back) == n
    assert [row[0] for row in back] == [42] * n
    assert [row[1] for row in back] == stamps
    np.testing.assert_array_equal(decode_vectors([row[2] for row in back], 5), features)
    np.testing.assert_array_equal(decode_vectors([row[3] for row in back], 3), outputs)
    assert [row[4] for row in back] == labels.tolist()
    assert [row[5] for row in back] == confidences.tolist()
    assert [row[6] for row in back] == clients
    assert [row[7] for row in back] == requests


def test_an_empty_batch_is_a_valid_stream_of_no_rows():
    payload = copy_payload(model_id=1, micros=np.zeros(0, np.int64), features=np.zeros((0, 3), "<f4"),
                           outputs=np.zeros((0, 2), "<f4"), labels=np.zeros(0), confidences=np.zeros(0),
                           client_ids=[], request_ids=[])
    assert payload == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"
