"""The predict gateway: run the registered model, apply its output policy, log every row."""
from __future__ import annotations

import numpy as np
from django.conf import settings
from django.utils import timezone

from monitor.gateway.client_limit import charge_client
from monitor.gateway.restrictions import gateway_policy
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import (
    IngestError,
    IngestRefusal,
    QueryBatch,
    feature_values,
    identifier_problem,
    unseen_cells,
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
    schema = model.schema
    values: list[list[object]] = []
    for index, row in enumerate(rows):
        checked, problems = feature_values(row, schema)
        for where, problem in problems:
            details.append({"index": index, "field": where, "message": problem})
        if checked is not None:
            values.append(checked)
        if len(details) >= 50:
            break
    if details:
        raise IngestError(f"{len(details)} problem(s) in the request; nothing was predicted or stored", details)

    # The log keeps float32 numbers: the model is asked about the values as they will be logged.
    X = schema.encode(values).astype(np.float32).astype(np.float64)
    # A restricted client: refused here (Restricted: 403 blocked, 429 throttled), or its outputs reduced further.
    restricted = gateway_policy(model, payload["client_id"], len(X))
    charge_client(model, payload["client_id"], len(X))  # the model's per-client throttle: 429 past it
    try:
        predictor = predictor_for(model)
    except NoArtifact as exc:
        raise IngestError(str(exc), refusal=IngestRefusal.NO_ARTIFACT) from None
    if schema.is_plain:
        proba = predictor.predict_proba(X)
    else:
        # The artifact's own predict_proba on the raw rows: categories as sent (one never seen in training too).
        try:
            proba = predictor.predict_proba(schema.raw_frame(values) if hasattr(predictor, "for_schema") else X)
        except Exception as exc:
            refused = [schema.names[i] for i in schema.categorical if not schema.features[i].unseen_accepted]
            hint = f" (it takes no category it was not trained on in {refused})" if refused else ""
            raise IngestError(f"the model could not answer these rows{hint}: {type(exc).__name__}: {exc}"[:500],
                              [{"index": None, "field": "features", "message": "the model refused the rows"}]) from None
    outputs = model.policy.apply(proba)
    if restricted is not None:
        outputs = restricted.apply(outputs)
    now = timezone.now()
    batch = QueryBatch(
        client_ids=[payload["client_id"]] * len(X), timestamps=[now] * len(X), request_ids=[None] * len(X),
        features=X.astype(np.float32), outputs=outputs.astype(np.float32),
        unseen_cells=unseen_cells(values, schema),
    )
    store_queries(model, batch)
    labels = outputs.argmax(axis=1)
    return {
        "outputs": outputs.tolist(),
        "labels": [model.class_labels[i] for i in labels],
        "output_policy": model.output_policy if restricted is None else f"{model.output_policy} + restricted {restricted}",
    }
