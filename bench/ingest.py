"""Ingestion throughput: 200,000 queries (20 features, 500 clients) through POST /queries in batches
of 5,000 against PostgreSQL behind gunicorn (2 workers), in the row form {"queries": [...]} and in the
columnar form {"columns": {...}}, anchored on a raw COPY of the same rows into an identical table in the same
run; medians of three rounds each. Goal: API ÷ COPY ≥ 0.7. A third form sends the same number of mixed-type rows
to a pipeline over raw values (15 numbers, a tenth of them null, and 5 category strings, one in a hundred never
seen in training) in the row form. Goal: ≥ 0.5.

Usage: python bench/ingest.py [--queries N] [--batch N] [--senders N]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench,
dropped and recreated).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import ROOT, gunicorn, post_all, recreate_database  # noqa: E402

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
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
frame = pd.DataFrame(X[:, :15], columns=[f"n{i}" for i in range(15)])
frame.iloc[::10, 0] = np.nan
for j in range(5):
    frame[f"c{j}"] = [f"v{k}" for k in rng.integers(0, 10, len(frame))]
frame["label"] = y
pipeline = Pipeline([("prepare", ColumnTransformer([
    ("numbers", SimpleImputer(), [f"n{i}" for i in range(15)]),
    ("categories", OneHotEncoder(handle_unknown="ignore"), [f"c{j}" for j in range(5)])])),
    ("model", LogisticRegression())]).fit(frame.drop(columns="label")[:200], y[:200])
mixed = register_model(slug="bench-mixed", name="Bench mixed", label_column="label",
    artifact=Upload(sio.dumps(pipeline)), members=Upload(frame[:200].to_csv(index=False).encode()),
    nonmembers=Upload(frame[200:].to_csv(index=False).encode()))
print(ApiToken.issue(kind="ingest", model=mixed)[1])
"""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    numeric, mixed = out.stdout.strip().splitlines()[-2:]
    return numeric, mixed


def mixed_features(rows: list[dict], seed: int = 1) -> list[list]:
    """The mixed model's features for `rows`: their first 15 numbers (a tenth null), 5 category strings."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 10, size=(len(rows), 5))
    unseen = rng.random(size=(len(rows), 5)) < 0.01
    out = []
    for i, row in enumerate(rows):
        numbers: list = row["features"][:15]
        if i % 10 == 0:
            numbers = [None, *numbers[1:]]
        out.append([*numbers, *(f"new-{i % 50}" if unseen[i, j] else f"v{codes[i, j]}" for j in range(5))])
    return out


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


def copy_anchor(url: str, rows: list[dict]) -> float:
    """The same rows, same representation, COPY'd straight into an identical table: on the partitioned log, a copy
    of the day partition the rows land in (its indexes, the unique request_id index included)."""
    from datetime import UTC, datetime

    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        model_id = conn.execute("SELECT id FROM monitor_registeredmodel WHERE slug = 'bench'").fetchone()[0]
        day = datetime.fromtimestamp(rows[-1]["ts"], tz=UTC).date()
        partition = f"monitor_querylog_m{model_id}_d{day:%Y%m%d}"
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", [partition]).fetchone()[0]:
            conn.execute(f"CREATE TABLE bench_copy (LIKE {partition} INCLUDING ALL)")
            conn.execute("ALTER TABLE bench_copy ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
        else:
            conn.execute("CREATE TABLE bench_copy (LIKE monitor_querylog INCLUDING ALL)")
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
    parser.add_argument("--rounds", type=int, default=3, help="runs of each form and of the anchor (medians compared)")
    parser.add_argument("--spread-seconds", type=float, default=60.0,
                        help="time span of the logged queries; 86400 makes nearly every rollup bucket distinct (worst case)")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench")
    recreate_database(url)
    # Rounds send more than the default per-token allowance (1M rows a minute); the check still runs, higher.
    os.environ["TOKEN_QUERIES_PER_MINUTE"] = "100000000"  # noqa: S105 (a number, not a secret)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "monitor.settings", "LOG_LEVEL": "WARNING"}
    token, mixed_token = setup_model(env)
    rows = make_rows(args.queries, args.clients, spread_seconds=args.spread_seconds)
    mixed = mixed_features(rows)
    chunks = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
    def forms(round_: int) -> dict[str, list[bytes]]:
        # The row form {"queries": [...]} and the columnar form {"columns": {...}} of the same queries, each round
        # with request_ids of its own so every copy is stored in full.
        def rid(row: dict, form: str) -> str:
            return f"{form}{round_}-{row['request_id'][4:]}"
        return {
            "rows": [json.dumps({"queries": [dict(r, request_id=rid(r, "row")) for r in chunk]}).encode() for chunk in chunks],
            "columns": [json.dumps({"columns": {name: [r[name] if name != "request_id" else rid(r, "col") for r in chunk]
                                                for name in chunk[0]}}).encode() for chunk in chunks],
            "mixed": [json.dumps({"queries": [dict(r, request_id=rid(r, "mix"), features=mixed[start + k])
                                              for k, r in enumerate(chunk)]}).encode()
                      for start, chunk in zip(range(0, len(rows), args.batch), chunks, strict=True)],
        }

    # A few seconds per run is noisy on a shared 2-core machine: each form and the anchor run `--rounds` times,
    # interleaved in alternating order; the medians are compared.
    seconds: dict[str, list[float]] = {"rows": [], "columns": [], "mixed": []}
    with gunicorn(url) as port:
        # Warm up both workers (imports, model cache, connection) outside the timing.
        warm = [json.dumps({"queries": [dict(r, request_id=f"warm-{j}-{k}") for k, r in enumerate(rows[:10])]}).encode()
                for j in range(4)]
        post_all(port, token, "/api/v1/models/bench/queries", warm, 2)
        copies: list[float] = []
        for round_ in range(args.rounds):
            bodies = forms(round_)
            for form in (("rows", "columns", "mixed", "copy") if round_ % 2 == 0 else ("copy", "mixed", "columns", "rows")):
                if form == "copy":  # the anchor in the same conditions (WAL, checkpoints, cache) as the API runs
                    copies.append(copy_anchor(url, rows))
                elif form == "mixed":
                    seconds[form].append(post_all(port, mixed_token, "/api/v1/models/bench-mixed/queries", bodies[form],
                                                  args.senders))
                else:
                    seconds[form].append(post_all(port, token, "/api/v1/models/bench/queries", bodies[form], args.senders))
    import psycopg

    with psycopg.connect(url) as conn:
        for prefix in ("row", "col", "mix"):
            stored = conn.execute("SELECT count(*) FROM monitor_querylog WHERE request_id LIKE %s",
                                  [f"{prefix}%"]).fetchone()[0]
            if stored != len(rows) * args.rounds:
                raise SystemExit(f"FAIL: sent {len(rows) * args.rounds} queries ({prefix}), stored {stored}")
    copy_seconds = float(np.median(copies))
    copy_rate = len(rows) / copy_seconds
    print(f"ingest: {len(rows):,} queries × {N_FEATURES} features, {args.clients} clients, batches of {args.batch:,}, "
          f"gunicorn 2 workers, {args.senders} concurrent senders, timestamps over {args.spread_seconds:g} s")
    medians = {form: float(np.median(runs)) for form, runs in seconds.items()}
    for form, taken in medians.items():
        label = f"API {form}"
        spread = ", ".join(f"{len(rows) / t:,.0f}" for t in seconds[form])
        print(f"  {label:<19}: {len(rows) / taken:>10,.0f} queries/s  (median of {args.rounds}: {spread})")
    print(f"  anchor raw COPY    : {copy_rate:>10,.0f} queries/s  (median of {args.rounds}, {copy_seconds:.2f} s)")
    for form, taken in medians.items():
        goal = "0.5; mixed-type rows" if form == "mixed" else "0.7"
        print(f"  ratio {form:<7} ÷ COPY: {len(rows) / taken / copy_rate:.2f}  (goal ≥ {goal})")


if __name__ == "__main__":
    main()
