"""The demo's credit model as a team builds it (issue 26): raw UCI Adult rows — category strings, empty cells — and
one scikit-learn pipeline (imputer, one-hot encoder, forest) saved with skops, registered from those CSVs, a day of
traffic logged with an attacker sweeping noise around member records' numbers while holding their categories, then
scanned and audited for real."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from monitor.demo.datasets import credit_pipeline, load_adult_raw
from monitor.demo.simulation import Plan, build_traffic
from monitor.ingestion.rollups import fold_rollups
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import QueryBatch
from monitor.models import RegisteredModel
from monitor.registry.predictors import predictor_for
from monitor.registry.registration import Upload, register_model

CREDIT_SLUG = "credit-raw-pipeline"
N_TRAIN = 8000
N_SAMPLE = 2000


def raw_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def seed_credit_pipeline(*, stdout, seed: int = 0) -> RegisteredModel:
    import skops.io as sio

    existing = RegisteredModel.objects.filter(slug=CREDIT_SLUG).first()
    if existing is not None:
        return existing
    frame = load_adult_raw()
    order = np.random.default_rng(seed + 1).permutation(len(frame))
    members = frame.iloc[order[:N_TRAIN]].reset_index(drop=True)
    held_out = frame.iloc[order[N_TRAIN:]].reset_index(drop=True)
    stdout.write(f"training the credit pipeline (imputer, one-hot encoder, forest) on {N_TRAIN:,} raw Adult rows …")
    pipeline = credit_pipeline(seed=seed).fit(members.drop(columns="income"), members["income"])
    model = register_model(
        slug=CREDIT_SLUG, name="Credit (raw rows: scikit-learn pipeline)", team="credit-risk", label_column="income",
        artifact=Upload(sio.dumps(pipeline, compression=8), "credit-pipeline.skops"),
        members=Upload(raw_csv(members.iloc[:N_SAMPLE]), "members.csv"),
        nonmembers=Upload(raw_csv(held_out.iloc[:N_SAMPLE]), "nonmembers.csv"),
        population=Upload(raw_csv(held_out.iloc[N_SAMPLE:3 * N_SAMPLE]), "population.csv"),
    )
    now = time.time()
    traffic = build_traffic(model, Plan(benign_clients=60, hours=24, seed=seed + 7, attacks=("noise_sweep",),
                                        queries_per_day=120), end=now - 60)
    outputs = model.policy.apply(predictor_for(model).predict_proba(traffic.features.astype(np.float64)))
    for lo in range(0, len(traffic), 5000):
        hi = min(lo + 5000, len(traffic))
        store_queries(model, QueryBatch(
            client_ids=list(traffic.client_ids[lo:hi]), request_ids=[None] * (hi - lo),
            timestamps=[datetime.fromtimestamp(t, tz=UTC) for t in traffic.timestamps[lo:hi]],
            features=traffic.features[lo:hi].astype(np.float32), outputs=outputs[lo:hi].astype(np.float32)))
    fold_rollups(model)
    stdout.write(f"registered {CREDIT_SLUG}: {len(traffic):,} queries logged, categories and missing cells as sent")

    from audits import runner
    from audits.scheduling import request_audit
    from monitor.detection.calibration import calibrate_model
    from monitor.detection.scanning import scan_model

    calibrate_model(model)
    summary = scan_model(model)
    stdout.write(f"{CREDIT_SLUG}: first scan {summary.scanned:,} queries, {summary.findings} finding(s)")
    run = runner.execute(request_audit(model, enqueue=False).pk)
    rate = run.tpr_at()
    stdout.write(f"{CREDIT_SLUG}: first audit {run.status}; TPR@1%FPR {rate.get('value', 0):.1%} by "
                 f"{rate.get('attack')} (reference models: the whole pipeline, retrained on raw rows)")
    return model
