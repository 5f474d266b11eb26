"""Detector scan throughput and quality: 1,000,000 logged queries (20 features, 1,000 benign clients +
10 attackers of mixed kinds) in PostgreSQL; a full scan on one process (reading included), then a
second scan after 10 % more queries. Anchor: the time to read the same rows from PostgreSQL alone.

Usage: python bench/detect.py [--queries N] [--benign-clients N]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench_detect,
dropped and recreated). Goals: ≥ 50,000 queries/s; second ÷ first ≈ 0.1; ≥ 95 % of attackers flagged,
≤ 0.5 % of benign clients flagged.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import setup_django  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench_detect")


def register(n_features: int = 20):
    import numpy as np
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from monitor.registry.registration import Upload, register_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, n_features)) * rng.uniform(0.5, 20, n_features) + rng.uniform(-50, 50, n_features)
    X[:, :5] = np.round(X[:, :5])  # some integer-valued columns, as in real tabular data
    y = np.where(X[:, 5] + 0.3 * X[:, 6] + rng.normal(scale=8, size=len(X)) > X[:, 5].mean(), "yes", "no")
    names = [f"f{i:02d}" for i in range(n_features)]

    def csv(rows) -> bytes:
        lines = [",".join(names + ["label"])] + [",".join(f"{v:.6g}" for v in X[i]) + f",{y[i]}" for i in rows]
        return "\n".join(lines).encode()

    members, nonmembers, population = np.arange(0, 5000), np.arange(5000, 10_000), np.arange(10_000, 20_000)
    estimator = RandomForestClassifier(n_estimators=50, max_depth=12, random_state=0, n_jobs=1).fit(X[members], y[members])
    model = register_model(slug="bench-detect", name="Bench detect", label_column="label",
                           artifact=Upload(sio.dumps(estimator)), members=Upload(csv(members)),
                           nonmembers=Upload(csv(nonmembers)), population=Upload(csv(population)))
    return model, estimator


def store(model, estimator, traffic) -> None:
    import numpy as np

    from monitor.ingestion.store import store_queries
    from monitor.ingestion.validate import QueryBatch

    proba = estimator.predict_proba(traffic.features.astype(np.float64))
    from datetime import UTC, datetime

    for lo in range(0, len(traffic), 50_000):
        hi = min(lo + 50_000, len(traffic))
        store_queries(model, QueryBatch(
            client_ids=traffic.client_ids[lo:hi].tolist(),
            timestamps=[datetime.fromtimestamp(t, tz=UTC) for t in traffic.timestamps[lo:hi]],
            features=traffic.features[lo:hi].astype(np.float32), outputs=proba[lo:hi].astype(np.float32),
            request_ids=[None] * (hi - lo)))


def make_traffic(model, *, benign_clients: int, queries: int, start: float, hours: float, seed: int, attacks: bool,
                 per_client_day: float | None = None):
    from monitor.demo import traffic as gen

    datasets = {d.kind: d.load() for d in model.datasets.all()}
    pool = datasets["population"].X
    members, nonmembers = datasets["members"].X, datasets["nonmembers"].X
    stds = pool.std(axis=0)
    per_day = per_client_day or queries / benign_clients / (hours / 24)
    parts = [gen.benign_traffic(pool, n_clients=benign_clients, seed=seed, start=start, duration=hours * 3600,
                                queries_per_day=per_day)]
    if attacks:
        import numpy as np

        from monitor.registry.gateway import predictor_for

        rng = np.random.default_rng(seed)
        predict = predictor_for(model).predict_proba
        attack_start = start + hours * 3600 * 0.5
        targets = members[rng.choice(len(members), 40, replace=False)]
        kinds = [
            gen.noise_sweep(targets[:20], feature_stds=stds, client_id="attacker-01-noise", seed=1, start=attack_start),
            gen.noise_sweep(targets[20:], feature_stds=stds, client_id="attacker-02-noise", seed=2, start=attack_start, copies=80),
            gen.augmentation_sweep(targets[:15], feature_steps=stds * 0.05, client_id="attacker-03-augment", seed=3, start=attack_start),
            gen.boundary_search(predict, targets[:6], pool[:2000], feature_stds=stds, client_id="attacker-04-boundary", seed=4, start=attack_start),
            gen.boundary_search(predict, targets[6:12], pool[2000:4000], feature_stds=stds, client_id="attacker-05-boundary", seed=5, start=attack_start),
            gen.candidate_testing(members, nonmembers, n_candidates=400, client_id="attacker-06-candidates", seed=6, start=attack_start),
            gen.candidate_testing(members, nonmembers, n_candidates=800, member_share=0.3, client_id="attacker-07-candidates", seed=7, start=attack_start),
            gen.shadow_harvest(pool, n=800, client_id="attacker-08-shadow", seed=8, start=attack_start),
            gen.shadow_harvest(pool, n=1500, method="uniform", client_id="attacker-09-shadow", seed=9, start=attack_start),
            gen.split_accounts(gen.noise_sweep(targets[:10], feature_stds=stds, client_id="attacker-10-split", seed=10,
                                               start=attack_start, copies=60), n_accounts=4),
            # Harder ones (issue 14): reported per kind, not in the ≥ 95 % goal's denominator until they are caught.
            gen.adaptive_sweep(targets[30:35], pool, feature_stds=stds, client_id="attacker-11-adaptive", seed=11,
                               start=start, rate_per_second=800 / (hours * 3600)),
            gen.low_and_slow(members, nonmembers, n_candidates=int(per_day * hours / 24), client_id="attacker-12-slow",
                             seed=12, start=start, days=hours / 24),
        ]
        parts += kinds
    return gen.combine(*parts)


def read_only_seconds(model) -> float:
    """Anchor: read and decode the same rows with no detector work (what the scan cannot go below)."""
    from monitor.detection.scanning import load_queries, safe_high_water

    high, last, start = safe_high_water(model), 0, time.perf_counter()
    while last < high:
        batch, last = load_queries(model, after_id=last, upto_id=high, limit=200_000)
        if len(batch) == 0:
            break
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--benign-clients", type=int, default=1000)
    args = parser.parse_args()
    setup_django(URL)
    from monitor.detection.scanning import calibrate_model, scan_model
    from monitor.models import Alert, AlertAccount, QueryLog

    model, estimator = register()
    now = time.time()
    t = time.perf_counter()
    per_client_day = args.queries / args.benign_clients
    # The reference day: a tenth of the clients at the same per-client rate (calibration learns rates).
    reference = make_traffic(model, benign_clients=max(10, args.benign_clients // 10), queries=args.queries // 10,
                             start=now - 4 * 86400, hours=24, seed=11, attacks=False, per_client_day=per_client_day)
    store(model, estimator, reference)
    calibrate_model(model)
    main_traffic = make_traffic(model, benign_clients=args.benign_clients, queries=args.queries, start=now - 2 * 86400,
                                hours=24, seed=12, attacks=True)
    store(model, estimator, main_traffic)
    setup_seconds = time.perf_counter() - t
    from monitor.models import DetectorState

    # The calibration window is already known-benign; start the measured scan after it.
    DetectorState.objects.filter(model=model).update(watermark_id=len(reference))
    n_first = QueryLog.objects.filter(model=model).count() - len(reference)
    t = time.perf_counter()
    first = scan_model(model)
    first_seconds = time.perf_counter() - t
    more = make_traffic(model, benign_clients=args.benign_clients, queries=args.queries // 10, start=now - 86400 + 60,
                        hours=2.4, seed=13, attacks=False, per_client_day=per_client_day)
    store(model, estimator, more)
    t = time.perf_counter()
    second = scan_model(model)
    second_seconds = time.perf_counter() - t
    read_seconds = read_only_seconds(model)
    n_total = QueryLog.objects.filter(model=model).count()

    # An incident covers its client and every account linked into it.
    accounts = list(AlertAccount.objects.filter(alert__model=model, alert__source="detector")
                    .values_list("alert_id", "client_id"))
    flagged = {client for _, client in accounts}
    hard = ("adaptive_sweep", "low_and_slow")  # reported per kind below, outside the ≥ 95 % goal
    attackers = {client for client, kind in main_traffic.attackers.items() if kind not in hard}
    attacker_alerts = {alert for alert, client in accounts if client in attackers}
    benign_only = {alert for alert, client in accounts} - {a for a, c in accounts if c in main_traffic.attackers}
    benign = set(main_traffic.benign_clients) | set(more.benign_clients)
    caught = len(attackers & flagged) / len(attackers)
    false_alarms = len(benign & flagged) / len(benign)
    print(f"detect: {first.scanned:,} queries × 20 features, {len(main_traffic.benign_clients)} benign clients + "
          f"{len(attackers)} attacker accounts; setup {setup_seconds:.0f} s (not timed)")
    print(f"  first scan          : {first.scanned / first_seconds:>9,.0f} queries/s  ({first_seconds:.1f} s, {n_first:,} queries)")
    print(f"  second scan (+10 %) : {second.scanned / second_seconds:>9,.0f} queries/s  ({second_seconds:.1f} s, {second.scanned:,} queries)")
    print(f"  ratio second ÷ first: {second_seconds / first_seconds:.3f}  (goal ≈ 0.1)")
    print(f"  anchor: reading {n_total:,} rows alone: {n_total / read_seconds:,.0f} queries/s; scan ÷ read-only time "
          f"{first_seconds / (read_seconds * first.scanned / n_total):.1f}×")
    print(f"  attackers flagged   : {len(attackers & flagged)}/{len(attackers)} = {caught:.0%}  (goal ≥ 95 %) "
          f"missed: {sorted(attackers - flagged) or 'none'}")
    print(f"  benign flagged      : {len(benign & flagged)}/{len(benign)} = {false_alarms:.2%}  (goal ≤ 0.5 %); "
          f"budget {model.false_alarm_budget:g} per client-day")
    kinds: dict[str, list[str]] = {}
    for client, kind in main_traffic.attackers.items():
        kinds.setdefault(kind, []).append(client)
    print("  recall per kind     : " + ", ".join(f"{kind} {sum(c in flagged for c in clients)}/{len(clients)}"
                                                for kind, clients in sorted(kinds.items())))
    print(f"  alerts              : {len(attacker_alerts)} for {len(attackers)} attacker accounts "
          f"({len(attacker_alerts) / len(attackers):.2f} per account; linked accounts fold into one incident), "
          f"{len(benign_only)} on benign clients only; {Alert.objects.filter(model=model, source='detector').count()} in all")
    print(f"  findings by detector: first {first.by_detector}, second {second.by_detector}")
    from django.db import connection

    from monitor.models import ScannerState

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [ScannerState._meta.db_table])
        size = cursor.fetchone()[0]
    rows = ScannerState.objects.filter(model=model).count()
    print(f"  scanner state       : {rows:,} rows (detector × client), {size / 2**20:.1f} MiB on disk")


if __name__ == "__main__":
    main()
