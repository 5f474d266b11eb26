"""The detectors see the same batch whichever database holds the log (SQLite by default, PostgreSQL in CI).

Time-bucketed detectors (volume's ten-minute windows, the day buckets) count a query in floor(ts / window): a
timestamp read back a few microseconds early moves a query on a boundary into the window before. SQLite's
julianday() did exactly that (an exact second read about 12 µs early, fractions kept to the millisecond only), so
these pin what `log_reader` hands the detectors to the exact float a timestamp's microseconds make, on either
database: run this file on both.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitor.detection.log_reader import load_queries, load_window
from monitor.ingestion.store import safe_high_water, store_queries
from monitor.ingestion.validate import QueryBatch
from tests.factories import make_model

pytestmark = pytest.mark.django_db

# A ten-minute boundary, whole seconds, each digit of the microseconds, and the microsecond either side of it.
BOUNDARY = datetime(2026, 12, 3, 5, 40, tzinfo=UTC)
TIMES = [BOUNDARY, BOUNDARY - timedelta(microseconds=1), BOUNDARY + timedelta(microseconds=1),
         BOUNDARY + timedelta(seconds=1), BOUNDARY + timedelta(microseconds=123_456),
         BOUNDARY + timedelta(microseconds=999_999), BOUNDARY + timedelta(seconds=59, microseconds=400),
         datetime(2026, 12, 3, 23, 59, 59, 999_999, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)]


def exact_seconds(ts: datetime) -> float:
    """What the detectors must see: the timestamp's microseconds since the epoch, divided once."""
    return ((ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) / 1_000_000


def store_times(model, times: list[datetime]) -> None:
    rng = np.random.default_rng(0)
    n, d, k = len(times), model.n_features, len(model.class_labels)
    outputs = rng.dirichlet(np.ones(k), n).astype(np.float32)
    store_queries(model, QueryBatch(client_ids=[f"client-{i % 3}" for i in range(n)], timestamps=list(times),
                                    features=rng.normal(size=(n, d)).astype(np.float32), outputs=outputs,
                                    request_ids=[None] * n))


def test_a_scan_reads_each_timestamp_to_the_microsecond_it_was_stored_with():
    model = make_model()
    store_times(model, TIMES)
    batch, _ = load_queries(model, after_id=0, upto_id=safe_high_water(model), limit=100)
    assert batch.timestamps.tolist() == [exact_seconds(ts) for ts in TIMES]
    # The boundary's own query opens its ten-minute window; the microsecond before it closes the previous one.
    windows = np.floor(batch.timestamps / 600).astype(np.int64)
    opening = int(exact_seconds(BOUNDARY)) // 600
    assert windows[:3].tolist() == [opening, opening - 1, opening]


def test_a_calibration_window_reads_the_same_timestamps_as_a_scan():
    model = make_model()
    store_times(model, TIMES)
    window, _, sample = load_window(model, from_id=0, upto=safe_high_water(model), exclude_clients=(), cap=100)
    assert sample is None and window.timestamps.tolist() == [exact_seconds(ts) for ts in TIMES]
