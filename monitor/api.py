"""HTTP API under /api/v1/ (django-ninja): ingestion, the predict gateway and model read-outs.

Errors are always JSON `{"error": "...", "details": [{"index", "field", "message"}]}`.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import orjson
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, django_auth
from pydantic import AfterValidator, BaseModel, ConfigDict

from audits.evidence import EvidenceError, build_period_bundle, build_run_bundle
from audits.models import AuditRun
from audits.scheduling import request_audit
from monitor import alerting, roles
from monitor.alerting import AlertActionError
from monitor.artifacts import ArtifactError
from monitor.audit_hooks import client_ip
from monitor.channels import ChannelError, create_channel, delete_channel
from monitor.delivery import send_test
from monitor.gateway import predict_and_log
from monitor.ingest import IngestError, store_queries, validate_queries
from monitor.models import SEVERITIES, Alert, ApiToken, NotificationChannel, RegisteredModel
from monitor.ratelimit import RateLimited, charge
from monitor.summaries import alert_summary, audit_summary, channel_summary, model_summary
from monitor.unavailable import DATABASE_ERRORS, database_unavailable


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: list[dict] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, details or []


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return ApiToken.authenticate(token)


ERROR_SCHEMA = {
    "type": "object", "required": ["error", "details"],
    "properties": {
        "error": {"type": "string", "minLength": 1, "description": "what is wrong, in one sentence"},
        "details": {"type": "array", "items": {"type": "object", "required": ["message"], "properties": {
            "index": {"type": ["integer", "null"], "description": "the offending row of a batch"},
            "field": {"type": ["string", "null"]}, "message": {"type": "string"}}}},
    },
}


class MonitorApi(NinjaAPI):
    """Documents the error every operation can answer with: the JSON error shape on every 4xx/5xx, 401 on every
    operation (all need a token) and 400 on every operation that takes parameters or a body (ninja validates)."""

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(**kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                responses.setdefault(401, {"description": "Unauthorized"})
                if operation.get("parameters") or operation.get("requestBody"):
                    responses.setdefault(400, {"description": "Bad Request"})
                for status, response in responses.items():
                    if int(status) >= 400:
                        response["content"] = error_content
                operation["responses"] = dict(sorted(responses.items(), key=lambda item: int(item[0])))
        return schema


api = MonitorApi(
    title="Membership-inference monitor API",
    version="1",
    urls_namespace="api",
    auth=[BearerToken(), django_auth],
    # The schema and the docs page name every endpoint: signed-in users of any role only, like every page.
    docs_decorator=roles.role_required(*roles.READ),
    description="Log queries, call models through the gateway, read audits and alerts. "
    "Authenticate with `Authorization: Bearer <token>` (see `manage.py issue_token`).",
)


def _error(request: HttpRequest, status: int, error: str, details: list[dict] | None = None) -> HttpResponse:
    return api.create_response(request, {"error": error, "details": details or []}, status=status)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return _error(request, exc.status, exc.error, exc.details)


@api.exception_handler(IngestError)
def on_ingest_error(request: HttpRequest, exc: IngestError) -> HttpResponse:
    return _error(request, exc.status, exc.message, exc.details)


@api.exception_handler(RateLimited)
def on_rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    if exc.too_large:
        return _error(request, 413, str(exc))
    response = _error(request, 429, str(exc))
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "authentication required: send Authorization: Bearer <token>")


@api.exception_handler(NinjaValidationError)
def on_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    # ninja's locations start with where the value came from and the parameter name ("body", "body", "reason").
    details = [{"index": None,
                "field": ".".join(str(p) for p in err.get("loc", []) if p not in ("body", "query", "path")) or None,
                "message": err.get("msg", "invalid")} for err in exc.errors]
    return _error(request, 400, "invalid request", details)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, str(exc) or "not found")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, str(exc))


for _database_error in DATABASE_ERRORS:  # the database restarting: 503 + Retry-After, also under DEBUG
    api.add_exception_handler(_database_error, database_unavailable)


def _user(request: HttpRequest) -> AbstractBaseUser | None:
    auth = request.auth
    if isinstance(auth, ApiToken):
        return auth.user if auth.kind == ApiToken.USER else None
    return auth


def require_roles(request: HttpRequest, allowed: tuple[str, ...]) -> None:
    auth = request.auth
    if isinstance(auth, ApiToken) and auth.kind == ApiToken.INGEST:
        raise ApiError(403, "an ingestion token may only log queries for its own model")
    if not roles.has_role(_user(request), allowed):
        raise ApiError(403, f"this endpoint needs one of the roles: {', '.join(allowed)}")


def model_for_write(request: HttpRequest, slug: str, *, user_roles: tuple[str, ...]) -> RegisteredModel:
    """Ingestion tokens write only their own model; users need one of `user_roles`."""
    auth = request.auth
    if isinstance(auth, ApiToken) and auth.kind == ApiToken.INGEST:
        if auth.model.slug != slug:
            raise ApiError(403, "this ingestion token belongs to another model")
        return auth.model
    require_roles(request, user_roles)
    return get_model(slug)


def charge_token(request: HttpRequest, rows: int) -> None:
    """Rows sent with an API token count against its per-minute limit (people on a session are not limited)."""
    if isinstance(request.auth, ApiToken):
        charge(request.auth, rows)


def get_model(slug: str) -> RegisteredModel:
    # PostgreSQL text cannot hold NUL, so no slug has one, and the query would fail rather than find nothing.
    model = RegisteredModel.objects.filter(slug=slug).first() if "\x00" not in slug else None
    if model is None:
        raise ApiError(404, f"unknown model {slug!r:.80}")
    return model


def _read_body(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        raise ApiError(400, "the Content-Length header is not a number")
    if int(declared) > limit:
        raise ApiError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,} bytes")
    body = request.body
    if len(body) > limit:
        raise ApiError(413, f"the body is {len(body):,} bytes; the limit is {limit:,} bytes")
    return body


def _load_json(raw: bytes, *, where: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # parse again with the standard library: it accepts NaN, which validation then names by field
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ApiError(400, f"the body is not valid JSON ({where})", [{"index": None, "field": None, "message": message}]) from exc


def parse_query_body(request: HttpRequest) -> list:
    body = _read_body(request, settings.INGEST_MAX_BYTES)
    content_type = request.content_type or ""
    if content_type in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        rows = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                rows.append(_load_json(line, where=f"NDJSON line {number}"))
        return rows
    if content_type not in ("application/json", ""):
        raise ApiError(415, f"unsupported content type {content_type!r}; send application/json or application/x-ndjson")
    payload = _load_json(body, where="JSON body")
    if not isinstance(payload, dict) or "queries" not in payload:
        raise ApiError(400, 'the body must be an object {"queries": [...]}',
                       [{"index": None, "field": "queries", "message": "missing"}])
    return payload["queries"]


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


@api.post(
    "/models/{slug}/queries",
    summary="Log a batch of answered queries",
    response={201: dict, 400: dict, 403: dict, 404: dict, 413: dict, 415: dict, 429: dict},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "required": ["queries"], "properties": {
                    "queries": {"type": "array", "maxItems": 10000, "items": _QUERY_SCHEMA}}}},
                "application/x-ndjson": {"schema": _QUERY_SCHEMA},
            },
        }
    },
)
def log_queries(request: HttpRequest, slug: str) -> Status:
    """Atomic: any invalid row rejects the batch and nothing is stored. Idempotent on `request_id`."""
    model = model_for_write(request, slug, user_roles=(roles.ADMIN,))
    rows = parse_query_body(request)
    charge_token(request, len(rows) if isinstance(rows, list) else 1)
    batch = validate_queries(rows, model=model, max_queries=settings.INGEST_MAX_QUERIES)
    result = store_queries(model, batch)
    return Status(201, {"accepted": result.accepted, "duplicates": result.duplicates})


@api.post(
    "/models/{slug}/predict",
    summary="Predict through the gateway (output policy applied, every row logged)",
    response={200: dict, 400: dict, 403: dict, 404: dict, 413: dict, 429: dict, 502: dict},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["client_id", "features"],
        "properties": {"client_id": {"type": "string", "maxLength": 128},
                       "features": {"type": "array", "maxItems": 1000, "items": {"type": "array", "items": {"type": "number"}}}},
    }}}}},
)
def predict(request: HttpRequest, slug: str) -> dict:
    model = model_for_write(request, slug, user_roles=roles.OPERATE)
    payload = _load_json(_read_body(request, settings.INGEST_MAX_BYTES), where="JSON body")
    if not isinstance(payload, dict):
        raise ApiError(400, 'the body must be an object {"client_id": ..., "features": [[...], ...]}')
    features = payload.get("features")
    charge_token(request, len(features) if isinstance(features, list) else 1)
    try:
        return predict_and_log(model, payload)
    except ArtifactError as exc:
        raise ApiError(502, f"the model could not answer: {exc}") from exc


@api.get("/models", summary="Registered models with their latest audit and open alerts", response={200: list[dict], 403: dict})
def list_models(request: HttpRequest) -> list[dict]:
    require_roles(request, roles.READ)
    return [model_summary(model) for model in RegisteredModel.objects.all()]


@api.get("/models/{slug}", summary="One registered model", response={200: dict, 403: dict, 404: dict})
def model_detail(request: HttpRequest, slug: str) -> dict:
    require_roles(request, roles.READ)
    return model_summary(get_model(slug))




# --- alerts -------------------------------------------------------------------------------------

def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")  # PostgreSQL text cannot store them
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class BodyIn(BaseModel):
    """Request bodies are plain pydantic models, which take only a JSON object: ninja's Schema reads attributes off
    any value, so a body of `true` or `[1]` would pass as one with every field at its default. An unknown field is
    an error that names it (like a query row's), not a typo silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AckIn(BodyIn):
    note: Text = Field("", max_length=2000)


class MuteIn(BodyIn):
    until: datetime
    reason: Text = Field(..., min_length=1, max_length=500)


def _alert(alert_id: int) -> Alert:
    alert = Alert.objects.select_related("model", "acknowledged_by", "resolved_by").filter(pk=alert_id).first()
    if alert is None:
        raise ApiError(404, f"no alert with id {alert_id}")
    return alert


@api.get("/alerts", summary="Alerts, newest first", response={200: list[dict], 400: dict, 403: dict})
def list_alerts(request: HttpRequest, status: str = "", model: Text = "", severity: str = "", client: Text = "",
                limit: int = 100, offset: int = 0) -> list[dict]:
    require_roles(request, roles.READ)
    problems = []
    if status and status not in {"open", "acknowledged", "resolved", "muted", "unresolved"}:
        problems.append({"index": None, "field": "status", "message": "one of open, acknowledged, resolved, muted, unresolved"})
    if severity and severity not in SEVERITIES:
        problems.append({"index": None, "field": "severity", "message": f"one of {', '.join(SEVERITIES)}"})
    if not 1 <= limit <= 1000:
        problems.append({"index": None, "field": "limit", "message": "1 ≤ limit ≤ 1000"})
    if not 0 <= offset < 2**63:  # the database counts rows in a signed 64-bit integer
        problems.append({"index": None, "field": "offset", "message": "0 ≤ offset < 2^63"})
    if problems:
        raise ApiError(400, "invalid filter", problems)
    alerts = Alert.objects.select_related("model", "acknowledged_by", "resolved_by")
    if status == "unresolved":
        alerts = alerts.unresolved()
    elif status:
        alerts = alerts.filter(status=status)
    if model:
        alerts = alerts.filter(model__slug=model)
    if severity:
        alerts = alerts.filter(severity=severity)
    if client:
        alerts = alerts.filter(client_id=client)
    return [alert_summary(a) for a in alerts.order_by("-last_seen", "-id")[offset:offset + limit]]


@api.get("/alerts/{alert_id}", summary="One alert", response={200: dict, 403: dict, 404: dict})
def get_alert(request: HttpRequest, alert_id: int) -> dict:
    require_roles(request, roles.READ)
    return alert_summary(_alert(alert_id))


def _act(request: HttpRequest, alert_id: int, action) -> dict:
    require_roles(request, roles.OPERATE)
    alert = _alert(alert_id)
    try:
        return alert_summary(action(alert))
    except AlertActionError as exc:
        raise ApiError(409, str(exc)) from exc


@api.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert", response={200: dict, 400: dict, 403: dict, 404: dict, 409: dict})
def acknowledge_alert(request: HttpRequest, alert_id: int, body: AckIn | None = None) -> dict:
    note = body.note if body else ""
    return _act(request, alert_id, lambda a: alerting.acknowledge(a, user=_user(request), note=note, ip=client_ip(request)))


@api.post("/alerts/{alert_id}/resolve", summary="Resolve an alert", response={200: dict, 400: dict, 403: dict, 404: dict, 409: dict})
def resolve_alert(request: HttpRequest, alert_id: int, body: AckIn | None = None) -> dict:
    note = body.note if body else ""
    return _act(request, alert_id, lambda a: alerting.resolve(a, user=_user(request), note=note, ip=client_ip(request)))


@api.post("/alerts/{alert_id}/mute", summary="Mute an alert until a time, with a reason",
          response={200: dict, 400: dict, 403: dict, 404: dict, 409: dict})
def mute_alert(request: HttpRequest, alert_id: int, body: MuteIn) -> dict:
    if body.until.tzinfo is None:
        raise ApiError(400, "invalid request", [{"index": None, "field": "until", "message": "needs a timezone (Z or +00:00)"}])
    return _act(request, alert_id, lambda a: alerting.mute(a, user=_user(request), until=body.until, reason=body.reason,
                                                            ip=client_ip(request)))


# --- notification channels ----------------------------------------------------------------------

class ChannelIn(BodyIn):
    name: Text = Field(..., min_length=1, max_length=100)
    kind: str = Field(..., pattern="^(email|slack)$")
    target: Text = Field(..., min_length=1, max_length=2000)
    min_severity: str = Field("warning", pattern="^(info|warning|critical)$")
    models: list[Text] | None = None
    rate_limit_per_hour: int = Field(30, ge=1, le=10_000)
    digest: bool = True


def _channel(channel_id: int) -> NotificationChannel:
    channel = NotificationChannel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise ApiError(404, f"no channel with id {channel_id}")
    return channel


@api.get("/channels", summary="Notification channels", response={200: list[dict], 403: dict})
def list_channels(request: HttpRequest) -> list[dict]:
    require_roles(request, roles.CONFIGURE)
    return [channel_summary(c) for c in NotificationChannel.objects.all()]


@api.post("/channels", summary="Create a notification channel", response={201: dict, 400: dict, 403: dict})
def add_channel(request: HttpRequest, body: ChannelIn) -> Status:
    require_roles(request, roles.CONFIGURE)
    try:
        channel = create_channel(**body.model_dump(), user=_user(request), ip=client_ip(request))
    except ChannelError as exc:
        raise ApiError(400, exc.message, [{"index": None, "field": exc.field, "message": exc.message}]) from exc
    return Status(201, channel_summary(channel))


@api.delete("/channels/{channel_id}", summary="Delete a notification channel", response={204: None, 403: dict, 404: dict})
def remove_channel(request: HttpRequest, channel_id: int) -> Status:
    require_roles(request, roles.CONFIGURE)
    delete_channel(_channel(channel_id), user=_user(request), ip=client_ip(request))
    return Status(204, None)


@api.post("/channels/{channel_id}/test", summary="Send a test message now", response={200: dict, 403: dict, 404: dict, 502: dict})
def test_channel(request: HttpRequest, channel_id: int) -> dict:
    require_roles(request, roles.CONFIGURE)
    delivery = send_test(_channel(channel_id))
    if delivery.status != "sent":
        raise ApiError(502, f"the test message was not delivered: {delivery.last_error}")
    return {"status": "sent", "delivery": delivery.pk}


# --- audits -------------------------------------------------------------------------------------

@api.post("/models/{slug}/audits", summary="Start an audit now", response={202: dict, 403: dict, 404: dict})
def start_audit(request: HttpRequest, slug: str) -> Status:
    require_roles(request, roles.OPERATE)
    model = get_model(slug)
    run = request_audit(model, user=_user(request))
    return Status(202, {"id": run.pk, "status": run.status})


@api.get("/audits/{run_id}", summary="An audit run: status, progress, per-attack metrics with intervals",
         response={200: dict, 403: dict, 404: dict})
def get_audit(request: HttpRequest, run_id: int, full: bool = False) -> dict:
    require_roles(request, roles.READ)
    run = AuditRun.objects.select_related("model").filter(pk=run_id).first()
    if run is None:
        raise ApiError(404, f"no audit run with id {run_id}")
    return audit_summary(run, full=full)


@api.get("/models/{slug}/audits", summary="A model's audit runs, newest first", response={200: list[dict], 403: dict, 404: dict})
def list_audits(request: HttpRequest, slug: str, limit: int = 50) -> list[dict]:
    require_roles(request, roles.READ)
    model = get_model(slug)
    return [audit_summary(run) for run in model.audit_runs.select_related("model").order_by("-created_at")[:max(1, min(limit, 500))]]


# --- evidence ------------------------------------------------------------------------------------

def _zip_response(data: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@api.get("/audits/{run_id}/evidence.zip", summary="The signed evidence bundle of one audit run",
         response={200: None, 403: dict, 404: dict, 409: dict}, openapi_extra={
             "responses": {200: {"description": "a ZIP (report.pdf, audit.json, CSVs, audit_log.jsonl, MANIFEST.json + .sig)",
                                   "content": {"application/zip": {}}}}})
def audit_evidence(request: HttpRequest, run_id: int) -> HttpResponse:
    require_roles(request, roles.EXPORT)
    run = AuditRun.objects.select_related("model").filter(pk=run_id).first()
    if run is None:
        raise ApiError(404, f"no audit run with id {run_id}")
    try:
        data = build_run_bundle(run, exported_by=_user(request))
    except EvidenceError as exc:
        raise ApiError(409, str(exc)) from exc
    return _zip_response(data, f"evidence-{run.model.slug}-audit-{run.pk}.zip")


@api.get("/models/{slug}/evidence.zip", summary="The signed evidence bundle of a model over a date range",
         response={200: None, 400: dict, 403: dict, 404: dict, 409: dict})
def model_evidence(request: HttpRequest, slug: str, start: datetime, end: datetime) -> HttpResponse:
    require_roles(request, roles.EXPORT)
    model = get_model(slug)
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ApiError(400, "invalid period", [{"index": None, "field": "start", "message": "start < end, both with a timezone"}])
    try:  # the bundle states the period in TIME_ZONE: year 1 at +14:00 or year 9999 at -14:00 fall off the calendar there
        timezone.localtime(start), timezone.localtime(end)
    except OverflowError as exc:
        raise ApiError(400, "invalid period", [{"index": None, "field": "start",
                                                "message": f"start and end must lie within years 1-9999 in {settings.TIME_ZONE}"}]) from exc
    try:
        data = build_period_bundle(model=model, start=start, end=end, exported_by=_user(request))
    except EvidenceError as exc:
        raise ApiError(409, str(exc)) from exc
    return _zip_response(data, f"evidence-{model.slug}-{start:%Y%m%d}-{end:%Y%m%d}.zip")
