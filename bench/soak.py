"""Soak: mixed load for --duration seconds (default 600) on PostgreSQL + Redis + gunicorn (2 workers) + one
Celery worker, all on loopback. Ingestion at a steady rate paced by a clock (POST /queries, batches with
request_id), predict calls, dashboard reads on a logged-in session (overview, model page, alerts), a query
scan enqueued on the worker every 60 s, one audit requested through the API early in the run and polled
until it finishes. Prints the sustained ingestion rate, p50/p99 latency and errors per endpoint, queries
sent vs stored (must be equal: non-zero exit otherwise), scanner lag and scan/audit durations.

Anchors, measured in the same run before the mixed load, on the same stack with nothing else running:
ingestion alone as fast as the senders go (capacity), and ingestion alone at the target rate (latency).

Usage: python bench/soak.py [--duration S] [--ingest-rate Q/S] [--batch N] [--senders N] [--predict-rate R/S]
                            [--page-rate R/S] [--worker-concurrency N] [--anchor-seconds S]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench_soak, dropped
and recreated) and Redis at BENCH_BROKER_URL (default redis://127.0.0.1:6379/13, flushed). Bounded: a
watchdog stops everything at duration + 1.5 × anchor seconds + 150 s (or --max-wall).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from common import gunicorn, setup_django  # noqa: E402
from soak_load import (  # noqa: E402
    PAGES,
    AuditWatch,
    Http,
    Ingestion,
    Predicts,
    Stats,
    audit_loop,
    login,
    page_loop,
    predict_loop,
    run_ingestion,
)
from soak_stack import (  # noqa: E402
    BROKER,
    N_CLIENTS,
    N_FEATURES,
    SLUG,
    URL,
    VACUUMED,
    Sampler,
    Vacuumer,
    calibrate,
    celery_worker,
    dead_tuples,
    descendants,
    make_traffic,
    people,
    register,
    wait_for_worker,
)

SCAN_EVERY = 60.0
AUDIT_AT = 10.0
INGEST = "POST /queries"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- the run -------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of mixed load")
    parser.add_argument("--ingest-rate", type=float, default=4000.0, help="target ingestion, queries/s")
    parser.add_argument("--batch", type=int, default=250, help="queries per POST /queries")
    parser.add_argument("--senders", type=int, default=4, help="concurrent ingestion connections")
    parser.add_argument("--predict-rate", type=float, default=5.0, help="POST /predict per second")
    parser.add_argument("--predict-rows", type=int, default=5, help="rows per predict call")
    parser.add_argument("--page-rate", type=float, default=1.0, help="dashboard page loads per second (3 pages in turn)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="the one Celery worker's processes")
    parser.add_argument("--anchor-seconds", type=float, default=20.0, help="ingestion alone at the target rate (the unpaced anchor runs half as long)")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="do not stand in for autovacuum when the server has it off (see the output)")
    parser.add_argument("--max-wall", type=float, default=None, help="hard cap on the whole run, seconds")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every request (seconds since the mixed load started, endpoint, ms, outcome), the "
                             "scanner samples and the scans enqueued to this JSON file")
    args = parser.parse_args()
    if BROKER.rstrip("/").endswith("/15"):
        raise SystemExit("redis db 15 is reserved; pick another BENCH_BROKER_URL")
    wall_start = time.time()
    cap = args.max_wall or args.duration + 1.5 * args.anchor_seconds + 150
    cap_deadline = wall_start + cap

    def cap_hit() -> None:
        print(f"soak: hard cap of {cap:.0f} s reached, stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it also wakes a main thread blocked in join()

    def last_resort() -> None:
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(3)

    watchdogs = [threading.Timer(cap, cap_hit), threading.Timer(cap + 30, last_resort)]
    for timer in watchdogs:
        timer.daemon = True
        timer.start()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args, wall_start, cap_deadline)
    except KeyboardInterrupt:
        print("soak: interrupted; gunicorn and the worker were stopped", file=sys.stderr)
        return 130
    finally:
        for timer in watchdogs:
            timer.cancel()


def run(args: argparse.Namespace, wall_start: float, cap_deadline: float) -> int:
    import psycopg
    import redis

    load_before = os.getloadavg()
    os.environ["CELERY_BROKER_URL"] = BROKER  # this process enqueues scans; gunicorn inherits it (audits)
    redis.Redis.from_url(BROKER).flushdb()
    setup_django(URL)
    from monitor.tasks import scan_model_queries

    rng = np.random.default_rng(0)
    model, estimator, pool = register(rng)
    reference_seconds = 60.0
    planned = args.ingest_rate * (reference_seconds + args.duration + args.anchor_seconds) + 40 * args.batch
    traffic, outputs = make_traffic(pool, estimator, rate=planned / (reference_seconds + args.duration + args.anchor_seconds),
                                    seconds=reference_seconds + args.duration + args.anchor_seconds, seed=1)
    n_reference = int(np.searchsorted(traffic.timestamps, traffic.timestamps[0] + reference_seconds))
    calibrate(model, estimator, traffic, outputs, n_reference)
    rows = (traffic.client_ids[n_reference:].tolist(), traffic.features[n_reference:], outputs[n_reference:])
    username, password, user_token = people()
    from monitor.models import ApiToken

    ingest_token = ApiToken.issue(kind=ApiToken.INGEST, model=model)[1]
    predict_pool = pool[::-1].copy()
    setup_seconds = time.time() - wall_start
    stats, give_up = Stats(), threading.Event()

    with celery_worker(args.worker_concurrency) as worker_log, gunicorn(URL) as port:
        try:
            wait_for_worker(time.time() + 90)
        except SystemExit:
            print(worker_log.read_text()[-3000:], file=sys.stderr)
            raise
        cookie = login(port, username, password)
        warm = Http(port)  # imports, the model cache and a connection in both gunicorn workers, untimed
        for _ in range(4):
            for path in PAGES:
                warm.call("GET", path, headers={"Cookie": cookie})
            warm.call("POST", f"/api/v1/models/{SLUG}/predict", orjson.dumps(
                {"client_id": "warm-up", "features": pool[:2]}, option=orjson.OPT_SERIALIZE_NUMPY),
                {"Authorization": f"Bearer {ingest_token}", "Content-Type": "application/json"})

        # Anchor 1: ingestion alone, unpaced (capacity of this stack for this load shape).
        now = time.time()
        capacity = Ingestion(prefix="anchor-capacity", first_row=0, batch=args.batch, rate=None, start=now,
                             end=now + args.anchor_seconds / 2, rows=rows)
        for thread in run_ingestion(capacity, args.senders, port, ingest_token, stats, "anchor: POST /queries unpaced", give_up):
            thread.join()
        capacity_rate = capacity.accepted / (capacity.last_ack - capacity.start)
        # Anchor 2: ingestion alone at the target rate (latency without the other traffic).
        now = time.time()
        alone = Ingestion(prefix="anchor-alone", first_row=capacity.next_row, batch=args.batch, rate=args.ingest_rate,
                          start=now, end=now + args.anchor_seconds, rows=rows)
        for thread in run_ingestion(alone, args.senders, port, ingest_token, stats, "anchor: POST /queries paced", give_up):
            thread.join()
        # The anchors' rows are not the soak's: the scanner starts after them.
        from django.db import connection

        from monitor.detection.scanning import safe_high_water
        from monitor.models import DetectorState

        DetectorState.objects.filter(model=model).update(watermark_id=safe_high_water(model))
        with connection.cursor() as cursor:  # planner statistics for the rows setup and the anchors wrote
            cursor.execute("ANALYZE")

        # The mixed load.
        sampler = Sampler(model.pk)
        sampler.start()
        start = time.time() + 0.5
        end = start + args.duration
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            autovacuum = cursor.fetchone()[0] == "on"
        vacuumer = Vacuumer(start + SCAN_EVERY / 2) if not autovacuum and not args.no_vacuum else None
        if vacuumer:
            vacuumer.start()
        stop, tally, watch = threading.Event(), Predicts(), AuditWatch()
        soak = Ingestion(prefix="soak", first_row=alone.next_row, batch=args.batch, rate=args.ingest_rate, start=start,
                         end=end, rows=rows)
        threads = run_ingestion(soak, args.senders, port, ingest_token, stats, INGEST, give_up)
        others = [
            threading.Thread(target=predict_loop, args=(port, ingest_token, predict_pool, args.predict_rate, args.predict_rows,
                                                        start, end, stats, stop, tally), daemon=True),
            threading.Thread(target=page_loop, args=(port, cookie, args.page_rate, start, end, stats, stop), daemon=True),
        ]
        audit_thread = threading.Thread(target=audit_loop, args=(port, user_token, start + AUDIT_AT, stats, give_up, watch),
                                        daemon=True)
        for thread in [*others, audit_thread]:
            thread.start()
        scans_enqueued: list[float] = []
        next_scan = start + SCAN_EVERY
        while time.time() < end:
            if time.time() >= next_scan:
                scan_model_queries.delay(model.pk)
                scans_enqueued.append(time.time())
                next_scan += SCAN_EVERY
            time.sleep(max(0.0, min(next_scan, end) - time.time()))
        stop.set()
        if vacuumer:
            vacuumer.stop.set()
        drain_deadline = min(time.time() + 90, cap_deadline - 25)
        for thread in [*threads, *others]:  # requests in flight finish; nothing new starts
            thread.join(max(0.1, drain_deadline - time.time()))
        load_stopped = time.time()
        load_after = os.getloadavg()
        sampler.cpu_frozen = True
        cpu = sampler.cpu_seconds()

        # Drain: one more scan over everything stored; wait for it and for the audit (bounded).
        with psycopg.connect(URL, autocommit=True) as conn:
            newest_at_stop = conn.execute("SELECT COALESCE(MAX(id), 0) FROM monitor_querylog WHERE model_id = %s",
                                          [model.pk]).fetchone()[0]
        _, _, watermark_at_stop, age_at_stop = sampler.samples[-1] if sampler.samples else (0.0, 0, 0, 0.0)
        scan_model_queries.delay(model.pk)
        drain_enqueued = time.time()
        drained_at = None
        while time.time() < drain_deadline:
            if drained_at is None and sampler.samples and sampler.samples[-1][2] >= newest_at_stop:
                drained_at = sampler.samples[-1][0]
            if drained_at is not None and (watch.run_id is None or watch.seen_done):
                break
            time.sleep(0.5)
        give_up.set()
        audit_thread.join(5)
        sampler.stop.set()
        sampler.join(5)
        worker_tail = worker_log.read_text()[-2000:]

    if args.dump:
        args.dump.write_bytes(orjson.dumps({
            "requests": [(t - start, endpoint, ms, outcome) for t, endpoint, ms, outcome in stats.log],
            "scanner": [(t - start, newest, watermark, age) for t, newest, watermark, age in sampler.samples],
            "scans_enqueued": [t - start for t in [*scans_enqueued, drain_enqueued]],
            "scans_done": sorted(sampler.scans.values(), key=lambda scan: scan["at"]),
            "cpu": [(t - start, used) for t, used in sampler.cpu_trace],
        }, option=orjson.OPT_SERIALIZE_NUMPY))

    # Sent vs stored.
    with psycopg.connect(URL, autocommit=True) as conn:
        def stored(request_ids: str) -> int:
            return conn.execute("SELECT count(*) FROM monitor_querylog WHERE model_id = %s AND request_id LIKE %s",
                                [model.pk, request_ids]).fetchone()[0]

        predicted = conn.execute("SELECT count(*) FROM monitor_querylog WHERE model_id = %s AND request_id IS NULL "
                                 "AND client_id LIKE 'pred-%%'", [model.pk]).fetchone()[0]
        checks = [
            ("ingestion, soak", soak.rows_sent, soak.accepted, stored("soak-%")),
            ("ingestion, anchors", capacity.rows_sent + alone.rows_sent, capacity.accepted + alone.accepted,
             stored("anchor-%")),
            ("predict rows", tally.rows_answered, tally.rows_answered, predicted),
        ]
        bloat = dead_tuples(conn)
        findings = conn.execute("SELECT count(*) FROM monitor_detectorfinding WHERE model_id = %s", [model.pk]).fetchone()[0]
        alerts = conn.execute("SELECT count(*) FROM monitor_alert WHERE model_id = %s", [model.pk]).fetchone()[0]

    # Report.
    duration = end - start
    sustained = checks[0][3] / (max(soak.last_ack, start + 1e-9) - start)
    print(f"soak: {duration:.0f} s of mixed load on PostgreSQL + Redis + gunicorn (2 workers) + 1 Celery worker "
          f"(concurrency {args.worker_concurrency}), loopback; model: RandomForest, {N_FEATURES} features, "
          f"{N_CLIENTS} clients; setup {setup_seconds:.0f} s (not timed)")
    print(f"  load: ingestion target {args.ingest_rate:,.0f} queries/s in batches of {args.batch} over {args.senders} "
          f"connections; predict {args.predict_rate:g}/s × {args.predict_rows} rows; pages {args.page_rate:g}/s "
          f"({', '.join(PAGES)}); scan enqueued every {SCAN_EVERY:.0f} s; one audit at +{AUDIT_AT:.0f} s")
    print(f"  machine: {os.cpu_count()} CPUs shared with the load generator; load average before "
          f"{load_before[0]:.2f}, at the end of the load {load_after[0]:.2f}")
    if autovacuum:
        print("  PostgreSQL autovacuum: on")
    elif vacuumer:
        print(f"  PostgreSQL autovacuum is OFF on this server: the soak stood in for it, VACUUM (ANALYZE) of "
              f"{', '.join(VACUUMED)} every 60 s ({len(vacuumer.seconds)} runs, median "
              f"{np.median(vacuumer.seconds) if vacuumer.seconds else float('nan'):.1f} s, max "
              f"{max(vacuumer.seconds, default=float('nan')):.1f} s); --no-vacuum to see the load without it")
    else:
        print("  PostgreSQL autovacuum is OFF on this server and --no-vacuum was given: nothing was vacuumed")
    print(f"  tables at the end: {bloat}")
    print(f"  anchors (ingestion alone, same stack, before the mixed load): unpaced {capacity_rate:,.0f} queries/s "
          f"over {capacity.last_ack - capacity.start:.1f} s; paced at the target: {alone.accepted:,} queries")
    scheduled = int(np.ceil(duration * args.ingest_rate / args.batch))
    print(f"  sustained ingestion: {checks[0][3]:,} queries stored in {soak.last_ack - start:.1f} s = {sustained:,.0f} queries/s "
          f"(target {args.ingest_rate:,.0f}: ratio {sustained / args.ingest_rate:.2f}; ÷ capacity alone "
          f"{sustained / capacity_rate:.2f}); {soak.claimed:,} of {scheduled:,} scheduled batches sent, "
          f"worst start delay behind the clock {soak.max_slip:.2f} s")
    full_minutes = [soak.per_minute[m] / 60 for m in range(int(duration // 60))]
    if full_minutes:
        print(f"  per-minute ingestion: min {min(full_minutes):,.0f} / max {max(full_minutes):,.0f} queries/s "
              f"over {len(full_minutes)} full minutes")
    mixed = load_stopped - start
    print("  CPU during the mixed load, cores busy on average: " + ", ".join(
        f"{role} {seconds / mixed:.2f}" for role, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        if role != "whole machine") + f"; whole machine {cpu['whole machine'] / mixed:.2f} of {os.cpu_count()} "
        f"(the rest is other work on the machine, PostgreSQL/Redis background processes, the kernel)")
    print(f"  {'endpoint':<32} {'count':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  failures")
    order = [INGEST, "POST /predict", *(f"GET {p}" for p in PAGES), "POST /audits", "GET /audits/{id}",
             "anchor: POST /queries unpaced", "anchor: POST /queries paced"]
    for endpoint in order + sorted(set(stats.latency) - set(order)):
        if endpoint not in stats.latency:
            continue
        ok, failed = stats.latency[endpoint], stats.errors[endpoint]
        print(f"  {endpoint:<32} {len(ok) + sum(failed.values()):>7} {sum(failed.values()):>7} {percentile(ok, 50):>8.1f} "
              f"{percentile(ok, 99):>8.1f} {max(ok, default=float('nan')):>8.1f}  "
              f"{', '.join(f'{k}×{v}' for k, v in failed.items()) or '-'}")
    alone_p99, mixed_p99 = percentile(stats.latency["anchor: POST /queries paced"], 99), percentile(stats.latency[INGEST], 99)
    print(f"  ratio POST /queries p99 mixed ÷ alone at the same rate: {mixed_p99 / alone_p99:.2f} "
          f"({mixed_p99:.0f} ms vs {alone_p99:.0f} ms)")

    passed = all(sent == stored_ for _, sent, _, stored_ in checks)
    for name, sent, acknowledged, stored_ in checks:
        print(f"  sent vs stored, {name:<19}: sent {sent:>10,}  acknowledged {acknowledged:>10,}  stored {stored_:>10,}"
              f"  {'equal' if sent == stored_ else 'DIFFERENT'}")
    print(f"  duplicates reported {soak.duplicates + capacity.duplicates + alone.duplicates} (retried batches); "
          f"unacknowledged batches {soak.unacknowledged + capacity.unacknowledged + alone.unacknowledged}; "
          f"predict rows in failed calls {tally.rows_failed}")

    print_worker(sampler, scans_enqueued, drain_enqueued, start, load_stopped, newest_at_stop, watermark_at_stop,
                 age_at_stop, drained_at, findings, alerts)
    print_audit(watch)
    print(f"  wall time {time.time() - wall_start:.0f} s")
    print(f"{'PASS' if passed else 'FAIL'}: queries sent {'=' if passed else '≠'} queries stored")
    if not passed:
        print(worker_tail, file=sys.stderr)
    return 0 if passed else 1


def print_worker(sampler: Sampler, enqueued: list[float], drain_enqueued: float, start: float, load_stopped: float,
                 newest_at_stop: int, watermark_at_stop: int, age_at_stop: float, drained_at: float | None,
                 findings: int, alerts: int) -> None:
    from datetime import datetime

    done = sorted((datetime.fromisoformat(at).timestamp(), scan) for at, scan in sampler.scans.items())
    done = [(t, scan) for t, scan in done if t >= start]
    times: list[float] = []
    for when in [*enqueued, drain_enqueued]:
        finished = next((t for t, _ in done if t >= when), None)
        if finished is not None and all(not when < e <= finished for e in [*enqueued, drain_enqueued] if e != when):
            times.append(finished - when)
    scanned = sum(scan.get("scanned", 0) for _, scan in done)
    during = [s for s in sampler.samples if s[0] <= load_stopped]
    worst = max(during, key=lambda s: s[3], default=(0, 0, 0, 0.0))
    worst_rows = max((s[1] - s[2] for s in during), default=0)
    print(f"  worker: {len(enqueued)} scans enqueued during the load + 1 at the end; {len(done)} completed, "
          f"{scanned:,} queries scanned, {findings} findings, {alerts} alerts")
    if times:
        print(f"  scan enqueue → done: median {np.median(times):.1f} s, max {max(times):.1f} s "
              f"({', '.join(f'{t:.1f}' for t in times)})")
    print(f"  scanner lag during the load: max {worst[3]:.0f} s (age of the oldest unscanned query), "
          f"max {worst_rows:,} ids behind; at the end of the load {age_at_stop:.0f} s, "
          f"{newest_at_stop - watermark_at_stop:,} ids behind")
    if drained_at is not None:
        print(f"  drain: the final scan reached the last query {drained_at - drain_enqueued:.1f} s after it was enqueued")
    else:
        print("  drain: the final scan did NOT reach the last query within the time allowed")


def print_audit(watch: AuditWatch) -> None:
    from datetime import datetime

    if watch.run_id is None:
        print("  audit: the request failed")
        return
    last = watch.last
    if last.get("status") not in ("done", "failed"):
        print(f"  audit #{watch.run_id}: not finished ({last.get('status')}, {last.get('progress')} %, {last.get('step')})")
        return

    def ts(key: str) -> float:
        return datetime.fromisoformat(last[key].replace("Z", "+00:00")).timestamp()

    head = ((last.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
    print(f"  audit #{watch.run_id}: {last['status']}; queued {ts('started_at') - watch.requested:.1f} s, "
          f"ran {ts('finished_at') - ts('started_at'):.1f} s, request → finished {ts('finished_at') - watch.requested:.1f} s "
          f"(seen by polling after {watch.seen_done - watch.requested:.1f} s)"
          + (f"; headline TPR@1%FPR {head['value']:.2%} ({head.get('attack')})" if head else f"; {last.get('error')}"))


if __name__ == "__main__":
    raise SystemExit(main())
