"""Months of traffic, compressed: N simulated days of one model's queries on PostgreSQL, posted day by day through
the API (gunicorn, columnar batches), scanned after each day, then retention at 14 days.

Prints: ingestion rate on the first and the last day (goal: the last ≥ 0.8 × the first), scan time per million
new queries on the first and the last day, the query log's disk use before and after retention (whole partitions
dropped), and the overview and model pages' p95 on the last day (goal ≤ 250 ms).

Also prints the whole database's disk use before and after retention, and for the scanner state and each
rollup table its live size (pgstattuple's tuple_len when the extension can be created, else the sum of
pg_column_size over its rows) beside its size on disk (pg_total_relation_size: heap, indexes and TOAST), with
the dead tuples and free space in the heap and how often autovacuum visited it.

Usage: python bench/scale.py [--days 30] [--rows N | --rows-per-day 100000] [--clients 5000] [--retention-days 14]
                             [--private-postgres | --no-private-postgres]
--rows is the total, spread evenly over the days (the first days take the remainder); --rows-per-day is the
alternative (the default, 100,000 a day). The issue's full scale is --rows 50000000 (about an hour here).

Where it runs: by default on a private PostgreSQL cluster it starts itself (bench/scale_pg.py: a fresh initdb
with the shipped postgresql.conf, so autovacuum on, as in production; data directory in a fresh folder on the
filesystem with the most free space, or under BENCH_PG_DIR), stopped and deleted at the end, also on an error,
Ctrl-C or SIGTERM. When BENCH_DATABASE_URL is set the default becomes that server instead (the database named
there is dropped and recreated); --private-postgres / --no-private-postgres overrides either default. Without a
private cluster and without BENCH_DATABASE_URL it uses postgres://postgres@127.0.0.1:5432/monitor_bench_scale.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import gunicorn, post_all, setup_django  # noqa: E402
from scale_pg import private_postgres  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/monitor_bench_scale"
DB_NAME = "monitor_bench_scale"
# The scanner's per-client state and every rollup table in monitor/models/queries.py.
WATCHED = ("monitor_scannerstate", "monitor_queryrollup", "monitor_clientdayrollup", "monitor_modelhourrollup")
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
    token, clear = ApiToken.issue(kind="ingest", model=model)
    # The bench measures how fast ingestion can go: the token's rows-per-minute limit (1,000,000 by default,
    # TOKEN_QUERIES_PER_MINUTE) would answer 429 at full scale, so this token has none (0 turns it off).
    token.queries_per_minute = 0
    token.save(update_fields=["queries_per_minute"])
    return model, clear


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


def database_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def server_facts() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version'), current_setting('autovacuum'), "
                       "current_setting('fsync'), current_setting('shared_buffers'), current_setting('max_wal_size')")
        version, autovacuum, fsync, shared_buffers, max_wal_size = cursor.fetchone()
    return (f"PostgreSQL {version}, autovacuum {autovacuum}, fsync {fsync}, shared_buffers {shared_buffers}, "
            f"max_wal_size {max_wal_size}")


def autovacuum_now() -> str:
    """What autovacuum is doing right now: the page timings share the machine with it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
        work = [row[0] for row in cursor.fetchall()]
    return "; ".join(work) or "idle"


def have_pgstattuple() -> bool:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        return True
    except Exception:  # noqa: BLE001 - not installed, or not allowed on the caller's server: fall back
        return False


def live_vs_disk(name: str, pgstattuple: bool) -> dict:
    """Live bytes (tuple data of the live rows) against bytes on disk, plus the heap's dead tuples and free space."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass)", [name, name])
        total, heap = (int(v) for v in cursor.fetchone())
        if pgstattuple:
            cursor.execute("SELECT tuple_count, tuple_len, dead_tuple_count, dead_tuple_len, free_space "
                           "FROM pgstattuple(%s::regclass)", [name])
            rows, live, dead_rows, dead, free = (int(v) for v in cursor.fetchone())
        else:
            cursor.execute(f"SELECT count(*), COALESCE(sum(pg_column_size(t.*)), 0) FROM {name} t")  # noqa: S608  # nosec B608 (our own table names)
            rows, live = (int(v) for v in cursor.fetchone())
            dead_rows = dead = free = None
        cursor.execute("SELECT n_dead_tup, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
                       "WHERE relid = %s::regclass", [name])
        n_dead, autovacuums, autoanalyzes = cursor.fetchone() or (None, None, None)
    return {"rows": rows, "live": live, "total": total, "heap": heap, "dead_rows": dead_rows, "dead": dead,
            "free": free, "n_dead_tup": n_dead, "autovacuums": autovacuums, "autoanalyzes": autoanalyzes}


def size(nbytes: int | None) -> str:
    if nbytes is None:
        return "n/a"
    if nbytes < 2**20:
        return f"{nbytes / 2**10:,.1f} kB"
    return f"{nbytes / 2**20:,.1f} MiB"


def rows_per_day(args: argparse.Namespace) -> list[int]:
    if args.rows is None:
        return [args.rows_per_day] * args.days
    base, extra = divmod(args.rows, args.days)
    return [base + (1 if day < extra else 0) for day in range(args.days)]


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--rows", type=int, default=None, help="total rows, spread evenly over --days")
    amount.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--retention-days", type=int, default=14)
    parser.add_argument("--loads", type=int, default=30)
    parser.add_argument("--deadline-minutes", type=float, default=None,
                        help="stop posting new days once this much wall time has passed, then measure retention "
                             "and the pages and print the summary for the days done")
    parser.add_argument("--private-postgres", action=argparse.BooleanOptionalAction, default=None,
                        help="start a private cluster with production defaults (default: yes unless "
                             "BENCH_DATABASE_URL is set)")
    args = parser.parse_args()
    private = args.private_postgres if args.private_postgres is not None else not os.environ.get("BENCH_DATABASE_URL")
    wall_started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if private:
            server = stack.enter_context(private_postgres())
            url = server.url(DB_NAME)
            where = f"private cluster, data directory {server.data} ({server.bin})"
        else:
            url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
            where = f"the server at {url}"
        print(f"scale: on {where}", flush=True)
        run(args, url, where, wall_started)
    print(f"scale: wall time {time.perf_counter() - wall_started:,.0f} s (private cluster stopped and removed: "
          f"{'yes' if private else 'n/a'})", flush=True)


def run(args: argparse.Namespace, url: str, where: str, wall_started: float) -> None:
    setup_django(url)
    from pages import session_cookie, time_page

    from monitor.detection.scanning import scan_model
    from monitor.ingestion import partitions, retention
    from monitor.ingestion.rollups import fold_rollups

    model, token = register()
    now = datetime.now(UTC)
    first_day = (now - timedelta(days=args.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    ingest_rates, scan_per_million = [], []
    facts = server_facts()
    print(f"  {facts}", flush=True)
    daily = rows_per_day(args)
    with gunicorn(url) as port:
        # Warm both workers up (imports, the model, connections) outside the timing: four small batches.
        partitions.ensure_partitions([model.pk], today=first_day.date(), back=0, ahead=1)
        post_all(port, token, "/api/v1/models/scale/queries", [day_bodies(first_day, 50, 10, seed=10_000 + i)[0] for i in range(4)], senders=2)
        for day in range(args.days):
            if args.deadline_minutes is not None and time.perf_counter() - wall_started > args.deadline_minutes * 60:
                print(f"  deadline of {args.deadline_minutes:g} min reached after {day} of {args.days} days", flush=True)
                break
            start = first_day + timedelta(days=day)
            partitions.ensure_partitions([model.pk], today=start.date(), back=0, ahead=1)  # as beat makes them ahead
            bodies = day_bodies(start, daily[day], args.clients, seed=day)
            ingest_rates.append(daily[day] / post_all(port, token, "/api/v1/models/scale/queries", bodies, senders=3))
            fold_rollups(model)  # beat folds every 30 s; once per simulated day here
            partitions.analyze_new_partitions()  # beat runs it every minute; once per simulated day here
            started = time.perf_counter()
            summary = scan_model(model)
            scan_per_million.append((time.perf_counter() - started) / max(summary.scanned, 1) * 1e6)
            print(f"  day {day + 1:>2}: {ingest_rates[-1]:>8,.0f} queries/s in, scan {scan_per_million[-1]:.1f} s per "
                  f"million ({summary.scanned:,} scanned{', ' + summary.skipped if summary.skipped else ''})", flush=True)
            del bodies
        before = log_bytes()
        db_before = database_bytes()
        others = {name: table_bytes(name) for name in ("monitor_queryrollup", "monitor_clientdayrollup", "monitor_scannerstate")}
        model.retention_days = args.retention_days
        model.save(update_fields=["retention_days"])
        started = time.perf_counter()
        result = retention.enforce(model, now=now)
        retention_seconds = time.perf_counter() - started
        after = log_bytes()
        db_after = database_bytes()
        pgstattuple = have_pgstattuple()
        watched = {name: live_vs_disk(name, pgstattuple) for name in WATCHED}
        cookie = session_cookie()
        vacuum_before = autovacuum_now()
        pages = {path: time_page(port, path, cookie, args.loads) for path in ("/", f"/models/{model.slug}/", "/metrics")}
        vacuum_after = autovacuum_now()
    done = len(ingest_rates)
    total = sum(daily[:done])
    print(f"scale: {total:,} queries over {done} of {args.days} days from {args.clients:,} clients, posted through the API "
          f"(columnar batches of {BATCH:,}, gunicorn 2 workers), scanned after each day")
    print(f"  on {where}: {facts}")
    print(f"  ingestion day 1 / day {done}: {ingest_rates[0]:,.0f} / {ingest_rates[-1]:,.0f} queries/s, "
          f"ratio {ingest_rates[-1] / ingest_rates[0]:.2f} (goal ≥ 0.8)")
    print(f"  scan per million new queries day 1 / day {done}: {scan_per_million[0]:.1f} / {scan_per_million[-1]:.1f} s "
          "(day 1 includes calibrating the detectors)")
    print(f"  retention {args.retention_days} days: dropped {sum(1 for e in result.expired if e.partition and not e.waiting)} "
          f"partitions, {result.rows_dropped:,} rows in {retention_seconds:.1f} s; waiting {sum(1 for e in result.expired if e.waiting)}")
    print(f"  query log on disk: {before / 2**20:,.0f} MiB before, {after / 2**20:,.0f} MiB after ({after / before:.2f})")
    print("  beside it: " + ", ".join(f"{name.removeprefix('monitor_')} {size / 2**20:,.0f} MiB" for name, size in others.items())
          + " (the client-minute rollup is kept 30 days at least; see monitor/ingestion/retention.py)")
    print(f"  whole database on disk: {size(db_before)} before retention, {size(db_after)} after "
          f"({db_after / db_before:.2f})")
    how = "pgstattuple tuple_len" if pgstattuple else "sum of pg_column_size over the rows"
    print(f"  live vs on disk after retention (live: {how}; on disk: pg_total_relation_size = heap + indexes + TOAST):")
    for name, t in watched.items():
        ratio = f"{t['total'] / t['live']:.2f}× live" if t["live"] else "n/a"
        dead = "n/a" if t["dead"] is None else f"{size(t['dead'])} in {t['dead_rows']:,} rows"
        print(f"    {name.removeprefix('monitor_'):<17} {t['rows']:>12,} rows, live {size(t['live'])}, on disk "
              f"{size(t['total'])} ({ratio}; heap {size(t['heap'])}, dead tuples {dead}, free {size(t['free'])}; "
              f"n_dead_tup {t['n_dead_tup']}, autovacuum {t['autovacuums']}×, autoanalyze {t['autoanalyzes']}×)")
    print(f"  autovacuum when the page loads began: {vacuum_before}; when they ended: {vacuum_after}")
    for path, timings in pages.items():
        print(f"  page {path:<16} p95 {p95(timings):.0f} ms (median {np.median(timings):.0f} ms, goal ≤ 250 ms)")
        print("    each load in order, ms: " + " ".join(f"{t:.0f}" for t in timings))


if __name__ == "__main__":
    main()
