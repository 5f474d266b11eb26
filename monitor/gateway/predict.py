"""The predict gateway: run the registered model, apply its output policy, log every row."""
from __future__ import annotations

import numpy as np
from django.conf import settings
from django.utils import timezone

from monitor.gateway.restrictions import gateway_policy
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import (
    IngestError,
    IngestRefusal,
    QueryBatch,
    identifier_problem,
    vector_problem,
)
from monitor.models import RegisteredModel
from monitor.registry.predictors import NoArtifact, predictor_for


def predict_and_log(model: RegisteredModel, payload: dict) -> dict:
    """Validate `{"client_id", "features": [[...]]}`, predict, apply the policy, log, answer."""
    details = []
    unknown = payload.keys() - {"client_id", "features"}
    for key in sorted(unknown):
        details.append({"index": None, "field": str(key)[:64], "message": "unknown field; expected client_id and features"})
    problem = identifier_problem(payload.get("client_id"), "client_id", required=True)
    if problem:
        details.append({"index": None, "field": "client_id", "message": problem})
    rows = payload.get("features")
    if not isinstance(rows, list) or not rows:
        details.append({"index": None, "field": "features", "message": "must be a non-empty list of feature rows"})
        rows = []
    elif len(rows) > settings.PREDICT_MAX_ROWS:
        raise IngestError(f"{len(rows):,} rows; at most {settings.PREDICT_MAX_ROWS:,} per request",
                          [{"index": None, "field": "features", "message": "too many rows"}],
                          refusal=IngestRefusal.TOO_LARGE)
    for index, row in enumerate(rows):
        problem = vector_problem(row, length=model.n_features, what="features", unit_interval=False)
        if problem:
            details.append({"index": index, "field": "features", "message": problem})
        if len(details) >= 50:
            break
    if details:
        raise IngestError(f"{len(details)} problem(s) in the request; nothing was predicted or stored", details)

    X = np.asarray(rows, dtype=np.float64)
    if np.any(np.abs(X) > np.finfo(np.float32).max):
        raise IngestError("a feature does not fit in float32", [{"index": None, "field": "features", "message": "out of range"}])
    # A restricted client: refused here (Restricted: 403 blocked, 429 throttled), or its outputs reduced further.
    restricted = gateway_policy(model, payload["client_id"], len(X))
    try:
        predictor = predictor_for(model)
    except NoArtifact as exc:
        raise IngestError(str(exc), refusal=IngestRefusal.NO_ARTIFACT) from None
    proba = predictor.predict_proba(X.astype(np.float32).astype(np.float64))
    outputs = model.policy.apply(proba)
    if restricted is not None:
        outputs = restricted.apply(outputs)
    now = timezone.now()
    batch = QueryBatch(
        client_ids=[payload["client_id"]] * len(X), timestamps=[now] * len(X), request_ids=[None] * len(X),
        features=X.astype(np.float32), outputs=outputs.astype(np.float32),
    )
    store_queries(model, batch)
    labels = outputs.argmax(axis=1)
    return {
        "outputs": outputs.tolist(),
        "labels": [model.class_labels[i] for i in labels],
        "output_policy": model.output_policy if restricted is None else f"{model.output_policy} + restricted {restricted}",
    }
