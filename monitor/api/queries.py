"""Writing queries: logging a batch the model already answered, and predicting through the gateway.

Both read their body by hand, not through a ninja Schema: batches are large (NDJSON too), and every bad row must
be named by index and field, with nothing stored."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Router, Status

from monitor.access import roles
from monitor.api.auth import charge_token, model_for_write
from monitor.api.bodies import load_json, ndjson_rows, read_body
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import IngestResultOut, PredictOut
from monitor.gateway.predict import predict_and_log
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import IngestError, validate_columns, validate_queries
from monitor.registry.artifacts import ArtifactError

router = Router(tags=["queries"])


def parse_query_body(request: HttpRequest) -> tuple[str, Any]:
    """("rows", the rows of a JSON {"queries": [...]} or NDJSON body) or ("columns", what {"columns": ...} holds)."""
    body = read_body(request, settings.INGEST_MAX_BYTES)
    content_type = request.content_type or ""
    if content_type in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        return "rows", ndjson_rows(body, max_rows=settings.INGEST_MAX_QUERIES)
    if content_type not in ("application/json", ""):
        raise ApiError(415, f"unsupported content type {content_type!r}; send application/json or application/x-ndjson")
    payload = load_json(body, where="JSON body")
    if isinstance(payload, dict) and set(payload) == {"columns"}:
        return "columns", payload["columns"]
    if not isinstance(payload, dict) or "queries" not in payload:
        raise ApiError(400, 'the body must be an object {"queries": [...]} or {"columns": {...}}',
                       [problem("queries", "missing")])
    return "rows", payload["queries"]


_QUERY_SCHEMA = {
    "type": "object",
    "required": ["client_id", "features", "output"],
    "properties": {
        "client_id": {"type": "string", "maxLength": 128},
        "features": {"type": "array", "items": {"type": "number"}, "description": "one value per model feature"},
        "output": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                   "description": "class probabilities as returned to the client"},
        "ts": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
        "request_id": {"type": "string", "maxLength": 128, "description": "idempotency key"},
    },
}


_COLUMNS_SCHEMA = {
    "type": "object", "required": ["columns"], "additionalProperties": False,
    "description": "the same queries a column at a time (cheaper to parse and check): row i is the i-th value of "
                   "each list; ts and request_id may be left out or hold nulls",
    "properties": {"columns": {"type": "object", "required": ["client_id", "features", "output"],
                               "additionalProperties": False,
                               "properties": {name: {"type": "array", "maxItems": 10000, "items": spec}
                                              for name, spec in _QUERY_SCHEMA["properties"].items()}}},
}


@router.post(
    "/models/{slug}/queries",
    summary="Log a batch of answered queries",
    response={201: IngestResultOut, 400: dict, 403: dict, 404: dict, 413: dict, 415: dict, 429: dict},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["queries"], "properties": {
                        "queries": {"type": "array", "maxItems": 10000, "items": _QUERY_SCHEMA}}},
                    _COLUMNS_SCHEMA]}},
                "application/x-ndjson": {"schema": _QUERY_SCHEMA},
            },
        }
    },
)
def log_queries(request: HttpRequest, slug: str) -> Status:
    """Atomic: any invalid row rejects the batch and nothing is stored. Idempotent on `request_id`."""
    model = model_for_write(request, slug, user_roles=(roles.ADMIN,))
    shape, rows = parse_query_body(request)
    try:
        if shape == "columns":
            client_ids = rows.get("client_id") if isinstance(rows, dict) else None
            charge_token(request, len(client_ids) if isinstance(client_ids, list) else 1)
            batch = validate_columns(rows, model=model, max_queries=settings.INGEST_MAX_QUERIES)
        else:
            charge_token(request, len(rows) if isinstance(rows, list) else 1)
            batch = validate_queries(rows, model=model, max_queries=settings.INGEST_MAX_QUERIES)
    except IngestError as exc:
        raise ApiError.from_ingest(exc) from exc
    result = store_queries(model, batch)
    return Status(201, {"accepted": result.accepted, "duplicates": result.duplicates})


@router.post(
    "/models/{slug}/predict",
    summary="Predict through the gateway (output policy applied, every row logged)",
    response={200: PredictOut, 400: dict, 403: dict, 404: dict, 409: dict, 413: dict, 429: dict, 502: dict},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["client_id", "features"],
        "properties": {"client_id": {"type": "string", "maxLength": 128},
                       "features": {"type": "array", "maxItems": 1000, "items": {"type": "array", "items": {"type": "number"}}}},
    }}}}},
)
def predict(request: HttpRequest, slug: str) -> dict:
    model = model_for_write(request, slug, user_roles=roles.OPERATE)
    payload = load_json(read_body(request, settings.INGEST_MAX_BYTES), where="JSON body")
    if not isinstance(payload, dict):
        raise ApiError(400, 'the body must be an object {"client_id": ..., "features": [[...], ...]}')
    features = payload.get("features")
    charge_token(request, len(features) if isinstance(features, list) else 1)
    try:
        return predict_and_log(model, payload)
    except IngestError as exc:
        raise ApiError.from_ingest(exc) from exc
    except ArtifactError as exc:
        raise ApiError(502, f"the model could not answer: {exc}") from exc
