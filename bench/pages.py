"""Dashboard latency at scale: 10,000,000 logged queries from 5,000 clients over 30 days and 100 audit
runs in PostgreSQL; 50 loads each of the overview, the model page and /metrics (goal ≤ 100 ms) through gunicorn (2 workers).
Prints p50/p95 per page (goal p95 ≤ 250 ms) and, as anchor, one raw-log aggregate of the same period
(what the pages would cost without rollups).

Usage: python bench/pages.py [--queries N] [--clients N] [--loads N]
Needs PostgreSQL at BENCH_DATABASE_URL (default .../monitor_bench_pages, dropped and recreated).
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gunicorn, setup_django  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench_pages")


def fill(model, *, queries: int, clients: int) -> float:
    """The log and its three rollups, written by PostgreSQL itself (generate_series), then analysed."""
    from django.db import connection

    d, k = model.n_features, len(model.class_labels)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Client activity follows a power law (a few heavy callers, a long tail), times span 30 days.
        cursor.execute("""
            INSERT INTO monitor_querylog (model_id, client_id, ts, features, outputs, label, confidence)
            SELECT %s, 'client-' || lpad(floor(%s * power(random(), 2))::int::text, 5, '0'),
                   now() - random() * interval '30 days', decode(repeat('00', %s), 'hex'),
                   decode(repeat('00', %s), 'hex'), (random() < 0.3)::int, 0.5 + random() / 2
            FROM generate_series(1, %s)""", [model.pk, clients, 4 * d, 4 * k, queries])
        cursor.execute("""
            INSERT INTO monitor_queryrollup (model_id, client_id, minute, count, confidence_sum)
            SELECT model_id, client_id, date_trunc('minute', ts), count(*), sum(confidence)
            FROM monitor_querylog WHERE model_id = %s GROUP BY 1, 2, 3""", [model.pk])
        cursor.execute("""
            INSERT INTO monitor_clientdayrollup (model_id, client_id, day, count, confidence_sum)
            SELECT model_id, client_id, (minute AT TIME ZONE 'UTC')::date, sum(count), sum(confidence_sum)
            FROM monitor_queryrollup WHERE model_id = %s GROUP BY 1, 2, 3""", [model.pk])
        cursor.execute("""
            INSERT INTO monitor_modelhourrollup (model_id, hour, count, confidence_sum)
            SELECT model_id, date_trunc('hour', minute), sum(count), sum(confidence_sum)
            FROM monitor_queryrollup WHERE model_id = %s GROUP BY 1, 2""", [model.pk])
        cursor.execute("ANALYZE")
    from monitor.models import QueryLog, RollupWatermark

    # The rollups above already count every row: the pages' fold starts after them.
    top = QueryLog.objects.filter(model=model).order_by("-id").values_list("id", flat=True).first() or 0
    RollupWatermark.objects.update_or_create(model=model, defaults={"folded_to_id": top})
    return time.perf_counter() - started


def add_audits(model, n: int) -> None:
    """One real audit, then n - 1 copies of its result spread over 30 days (the pages read 100 runs)."""
    from datetime import timedelta

    from django.utils import timezone

    from audits import runner
    from audits.models import AuditRun
    from audits.scheduling import request_audit

    run = runner.execute(request_audit(model, enqueue=False).pk)
    now = timezone.now()
    AuditRun.objects.bulk_create([
        AuditRun(model=model, status="done", trigger="schedule", progress=100, step="done", result=run.result,
                 policy_result=run.policy_result, config=run.config, data_sha256=run.data_sha256,
                 artifact_sha256=run.artifact_sha256, created_at=now - timedelta(hours=7.2 * i),
                 finished_at=now - timedelta(hours=7.2 * i), started_at=now - timedelta(hours=7.2 * i))
        for i in range(1, n)])


def session_cookie() -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_user("bench-viewer")  # logged in by session below, no password
    user.groups.add(Group.objects.get(name="viewer"))
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "monitor.access.roles.RolePermissionBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def time_page(port: int, path: str, cookie: str, loads: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    timings = []
    for i in range(loads + 3):
        started = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path} → {response.status}: {body[:300]!r}")
        if i >= 3:  # three warm-up loads per page
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--audits", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", help="time the pages on the data a previous run left")
    args = parser.parse_args()
    setup_django(URL, reuse=args.reuse)
    from django.db import connection

    from monitor.models import RegisteredModel
    from tests.factories import make_audited_model  # a small real model with reference data

    fill_seconds = 0.0
    if args.reuse:
        model = RegisteredModel.objects.get(slug="bench-pages")
        from django.contrib.auth import get_user_model

        get_user_model().objects.filter(username="bench-viewer").delete()
    else:
        model = make_audited_model(slug="bench-pages", n=400)
        fill_seconds = fill(model, queries=args.queries, clients=args.clients)
        add_audits(model, args.audits)
    cookie = session_cookie()
    with connection.cursor() as cursor:  # the anchor: what one page section would cost on the raw log
        started = time.perf_counter()
        cursor.execute("SELECT client_id, count(*) FROM monitor_querylog WHERE model_id = %s AND ts > now() - interval '7 days' "
                       "GROUP BY client_id ORDER BY 2 DESC LIMIT 20", [model.pk])
        cursor.fetchall()
        raw_ms = (time.perf_counter() - started) * 1000
    with gunicorn(URL) as port:
        results = {path: time_page(port, path, cookie, args.loads) for path in ("/", f"/models/{model.slug}/", "/metrics")}
    print(f"pages: {args.queries:,} queries from {args.clients:,} clients over 30 days, {args.audits} audit runs "
          f"(data written in {fill_seconds:.0f} s); {args.loads} loads per page, gunicorn 2 workers")
    for path, timings in results.items():
        p95 = statistics.quantiles(timings, n=20)[18]
        print(f"  {path:<28} p50 {statistics.median(timings):6.1f} ms   p95 {p95:6.1f} ms  (goal p95 ≤ 250 ms)")
    print(f"  anchor: one top-clients aggregate over the raw log for 7 days: {raw_ms:.0f} ms")


if __name__ == "__main__":
    main()
