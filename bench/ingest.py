"""Ingestion throughput: 200,000 queries (20 features, 500 clients) through POST /queries in batches
of 5,000 against PostgreSQL behind gunicorn (2 workers), anchored on a raw COPY of the same rows
into an identical table in the same run. Goal: API ÷ COPY ≥ 0.7.

Usage: python bench/ingest.py [--queries N] [--batch N] [--senders N]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench,
dropped and recreated).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import ROOT, gunicorn, recreate_database  # noqa: E402

N_FEATURES = 20


def setup_model(env: dict) -> str:
    """Register a 20-feature model and return an ingestion token (in a subprocess with the bench DB)."""
    script = """
import django, io, numpy as np
django.setup()
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from monitor.registry.registration import register_model, Upload
from monitor.models import ApiToken
rng = np.random.default_rng(0)
X = rng.normal(size=(400, 20)); y = np.where(X[:, 0] > 0, "yes", "no")
def csv(X, y):
    head = ",".join([f"f{i}" for i in range(20)] + ["label"])
    return (head + "\\n" + "\\n".join(",".join(map(str, r)) + "," + l for r, l in zip(X, y))).encode()
model = register_model(slug="bench", name="Bench", label_column="label",
    artifact=Upload(sio.dumps(LogisticRegression().fit(X, y))), members=Upload(csv(X[:200], y[:200])),
    nonmembers=Upload(csv(X[200:], y[200:])))
print(ApiToken.issue(kind="ingest", model=model)[1])
"""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def make_rows(n: int, clients: int, *, spread_seconds: float, seed: int = 0) -> list[dict]:
    """Queries in time order over the last `spread_seconds` (a service posting its latest traffic)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    p = rng.uniform(size=n).astype(np.float32)
    client = rng.integers(0, clients, size=n)
    now = time.time()
    ts = now - spread_seconds + np.sort(rng.uniform(0, spread_seconds, size=n))
    return [
        {"client_id": f"client-{client[i]:04d}", "features": features[i].tolist(), "output": [float(1 - p[i]), float(p[i])],
         "ts": float(ts[i]), "request_id": f"req-{i}"}
        for i in range(n)
    ]


def post_all(port: int, token: str, bodies: list[bytes], senders: int) -> float:
    def send(chunk: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for body in chunk:
            conn.request("POST", "/api/v1/models/bench/queries", body=body,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 201:
                raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        conn.close()

    chunks = [bodies[i::senders] for i in range(senders)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(senders) as pool:
        for future in [pool.submit(send, chunk) for chunk in chunks]:
            future.result()
    return time.perf_counter() - start


def copy_anchor(url: str, rows: list[dict]) -> float:
    """The same rows, same representation, COPY'd straight into an identical table."""
    from datetime import UTC, datetime

    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE monitor_querylog INCLUDING ALL)")
        model_id = conn.execute("SELECT id FROM monitor_registeredmodel WHERE slug = 'bench'").fetchone()[0]
        conn.commit()
        prepared = []
        for row in rows:
            output = np.asarray(row["output"], dtype="<f4")
            prepared.append((model_id, row["client_id"], datetime.fromtimestamp(row["ts"], tz=UTC),
                             np.asarray(row["features"], dtype="<f4").tobytes(), output.tobytes(),
                             int(output.argmax()), float(output.max()), row["request_id"]))
        start = time.perf_counter()
        with conn.cursor() as cursor:
            with cursor.copy("COPY bench_copy (model_id, client_id, ts, features, outputs, label, confidence, request_id) "
                             "FROM STDIN") as copy:
                for item in prepared:
                    copy.write_row(item)
        conn.commit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--spread-seconds", type=float, default=60.0,
                        help="time span of the logged queries; 86400 makes nearly every rollup bucket distinct (worst case)")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench")
    recreate_database(url)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "monitor.settings", "LOG_LEVEL": "WARNING"}
    token = setup_model(env)
    rows = make_rows(args.queries, args.clients, spread_seconds=args.spread_seconds)
    bodies = [json.dumps({"queries": rows[i:i + args.batch]}).encode() for i in range(0, len(rows), args.batch)]
    with gunicorn(url) as port:
        # Warm up both workers (imports, model cache, connection) outside the timing.
        warm = [json.dumps({"queries": [dict(r, request_id=f"warm-{j}-{k}") for k, r in enumerate(rows[:10])]}).encode()
                for j in range(4)]
        post_all(port, token, warm, 2)
        api_seconds = post_all(port, token, bodies, args.senders)
    import psycopg

    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM monitor_querylog WHERE request_id LIKE 'req-%%'").fetchone()[0]
    if stored != len(rows):
        raise SystemExit(f"FAIL: sent {len(rows)} queries, stored {stored}")
    copy_seconds = copy_anchor(url, rows)
    api_rate, copy_rate = len(rows) / api_seconds, len(rows) / copy_seconds
    print(f"ingest: {len(rows):,} queries × {N_FEATURES} features, {args.clients} clients, batches of {args.batch:,}, "
          f"gunicorn 2 workers, {args.senders} concurrent senders, timestamps over {args.spread_seconds:g} s")
    print(f"  API  POST /queries : {api_rate:>10,.0f} queries/s  ({api_seconds:.2f} s)")
    print(f"  anchor raw COPY    : {copy_rate:>10,.0f} queries/s  ({copy_seconds:.2f} s)")
    print(f"  ratio API ÷ COPY   : {api_rate / copy_rate:.2f}  (goal ≥ 0.7)")


if __name__ == "__main__":
    main()
