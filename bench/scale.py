"""Months of traffic, compressed: N simulated days of one model's queries on PostgreSQL, posted day by day through
the API (gunicorn, columnar batches), scanned after each day, then retention at 14 days.

Prints: ingestion rate on the first and the last day (goal: the last ≥ 0.8 × the first), scan time per million
new queries on the first and the last day, the query log's disk use before and after retention (whole partitions
dropped), and the overview and model pages' p95 on the last day (goal ≤ 250 ms).

Usage: python bench/scale.py [--days 30] [--rows-per-day 100000] [--clients 5000] [--retention-days 14]
The issue's full scale is --rows-per-day 1700000 (51 million rows; about an hour here).
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench_scale,
dropped and recreated).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import gunicorn, post_all, setup_django  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench_scale")
N_FEATURES = 20
BATCH = 5_000


def register():
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    from monitor.models import ApiToken
    from monitor.registry.registration import Upload, register_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, N_FEATURES))
    y = np.where(X[:, 0] + rng.normal(scale=0.5, size=len(X)) > 0, "yes", "no")

    def csv(rows) -> bytes:
        head = ",".join([f"f{i}" for i in range(N_FEATURES)] + ["label"])
        return (head + "\n" + "\n".join(",".join(f"{v:.6g}" for v in X[i]) + f",{y[i]}" for i in rows)).encode()

    model = register_model(slug="scale", name="Scale", label_column="label",
                           artifact=Upload(sio.dumps(LogisticRegression().fit(X[:1000], y[:1000]))),
                           members=Upload(csv(range(1000))), nonmembers=Upload(csv(range(1000, 2000))))
    return model, ApiToken.issue(kind="ingest", model=model)[1]


def day_bodies(day_start: datetime, rows: int, clients: int, seed: int) -> list[bytes]:
    """One day of benign traffic as columnar batches, in time order."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    p = rng.uniform(size=rows)
    client = rng.integers(0, clients, size=rows)
    ts = day_start.timestamp() + np.sort(rng.uniform(0, 86_400 - 1, size=rows))
    bodies = []
    for lo in range(0, rows, BATCH):
        hi = min(lo + BATCH, rows)
        bodies.append(json.dumps({"columns": {
            "client_id": [f"client-{c:05d}" for c in client[lo:hi]],
            "features": np.round(features[lo:hi], 4).tolist(),
            "output": [[round(1 - v, 6), round(v, 6)] for v in p[lo:hi]],
            "ts": ts[lo:hi].round(3).tolist(),
            "request_id": [f"d{seed}-{i}" for i in range(lo, hi)],
        }}).encode())
    return bodies


def log_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i "
                       "WHERE i.inhparent = 'monitor_querylog'::regclass")
        return int(cursor.fetchone()[0])


def table_bytes(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [name])
        return int(cursor.fetchone()[0])


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--retention-days", type=int, default=14)
    parser.add_argument("--loads", type=int, default=30)
    args = parser.parse_args()
    setup_django(URL)
    from pages import session_cookie, time_page

    from monitor.detection.scanning import scan_model
    from monitor.ingestion import partitions, retention
    from monitor.ingestion.rollups import fold_rollups

    model, token = register()
    now = datetime.now(UTC)
    first_day = (now - timedelta(days=args.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    ingest_rates, scan_per_million = [], []
    with gunicorn(URL) as port:
        # Warm both workers up (imports, the model, connections) outside the timing: four small batches.
        partitions.ensure_partitions([model.pk], today=first_day.date(), back=0, ahead=1)
        post_all(port, token, "/api/v1/models/scale/queries", [day_bodies(first_day, 50, 10, seed=10_000 + i)[0] for i in range(4)], senders=2)
        for day in range(args.days):
            start = first_day + timedelta(days=day)
            partitions.ensure_partitions([model.pk], today=start.date(), back=0, ahead=1)  # as beat makes them ahead
            bodies = day_bodies(start, args.rows_per_day, args.clients, seed=day)
            ingest_rates.append(args.rows_per_day / post_all(port, token, "/api/v1/models/scale/queries", bodies, senders=3))
            fold_rollups(model)  # beat folds every 30 s; once per simulated day here
            started = time.perf_counter()
            summary = scan_model(model)
            scan_per_million.append((time.perf_counter() - started) / max(summary.scanned, 1) * 1e6)
            print(f"  day {day + 1:>2}: {ingest_rates[-1]:>8,.0f} queries/s in, scan {scan_per_million[-1]:.1f} s per "
                  f"million ({summary.scanned:,} scanned{', ' + summary.skipped if summary.skipped else ''})", flush=True)
        before = log_bytes()
        others = {name: table_bytes(name) for name in ("monitor_queryrollup", "monitor_clientdayrollup", "monitor_scannerstate")}
        model.retention_days = args.retention_days
        model.save(update_fields=["retention_days"])
        started = time.perf_counter()
        result = retention.enforce(model, now=now)
        retention_seconds = time.perf_counter() - started
        after = log_bytes()
        cookie = session_cookie()
        pages = {path: time_page(port, path, cookie, args.loads) for path in ("/", f"/models/{model.slug}/", "/metrics")}
    total = args.days * args.rows_per_day
    print(f"scale: {total:,} queries over {args.days} days from {args.clients:,} clients, posted through the API "
          f"(columnar batches of {BATCH:,}, gunicorn 2 workers), scanned after each day")
    print(f"  ingestion day 1 / day {args.days}: {ingest_rates[0]:,.0f} / {ingest_rates[-1]:,.0f} queries/s, "
          f"ratio {ingest_rates[-1] / ingest_rates[0]:.2f} (goal ≥ 0.8)")
    print(f"  scan per million new queries day 1 / day {args.days}: {scan_per_million[0]:.1f} / {scan_per_million[-1]:.1f} s "
          "(day 1 includes calibrating the detectors)")
    print(f"  retention {args.retention_days} days: dropped {sum(1 for e in result.expired if e.partition and not e.waiting)} "
          f"partitions, {result.rows_dropped:,} rows in {retention_seconds:.1f} s; waiting {sum(1 for e in result.expired if e.waiting)}")
    print(f"  query log on disk: {before / 2**20:,.0f} MiB before, {after / 2**20:,.0f} MiB after ({after / before:.2f})")
    print("  beside it: " + ", ".join(f"{name.removeprefix('monitor_')} {size / 2**20:,.0f} MiB" for name, size in others.items())
          + " (the client-minute rollup is kept 30 days at least; see monitor/ingestion/retention.py)")
    for path, timings in pages.items():
        print(f"  page {path:<16} p95 {p95(timings):.0f} ms (median {np.median(timings):.0f} ms, goal ≤ 250 ms)")


if __name__ == "__main__":
    main()
