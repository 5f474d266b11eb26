"""What the detection tests share: storing generated traffic as a serving layer would, and what was flagged."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import QueryBatch
from monitor.models import AlertAccount, DetectorFinding
from monitor.registry.predictors import predictor_for
from tests.factories import make_audited_model

ATTACKS = ("noise_sweep", "boundary_search", "candidate_testing")


def store(model, traffic) -> None:
    """Log `traffic` with the model's own answers (coded rows, as the ingestion API stores them)."""
    outputs = predictor_for(model).predict_proba(traffic.features.astype(np.float64)).astype(np.float32)
    store_queries(model, QueryBatch(
        client_ids=list(traffic.client_ids), timestamps=[datetime.fromtimestamp(t, tz=UTC) for t in traffic.timestamps],
        features=traffic.features.astype(np.float32), outputs=outputs, request_ids=[None] * len(traffic)))


def model_with_attacks():
    """A calibrated model with a benign reference day, then six hours with three attackers (one over 3 accounts)."""
    model = make_audited_model(n=600)
    now = time.time()
    store(model, build_traffic(model, Plan(benign_clients=30, hours=24, seed=1), end=now - 7 * 3600))
    calibrate_model(model)
    live = build_traffic(model, Plan(benign_clients=30, hours=6, seed=2, attacks=ATTACKS, accounts=3), end=now - 600)
    store(model, live)
    model.live = live
    return model


def flagged(model) -> set[tuple[str, str]]:
    """(detector, client) of every finding."""
    return set(DetectorFinding.objects.filter(model=model).values_list("detector", "client_id"))


def in_incidents(model) -> set[str]:
    """Every client (account) in a detector alert."""
    return set(AlertAccount.objects.filter(alert__model=model, alert__source="detector")
               .values_list("client_id", flat=True))
