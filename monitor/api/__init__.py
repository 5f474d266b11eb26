"""HTTP API under /api/v1/ (django-ninja): one Router per resource, mounted here with the error handlers.

Errors are always JSON `{"error": "...", "details": [{"index", "field", "message"}]}`.
"""
from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.operation import Operation

from monitor.access import roles
from monitor.access.ratelimit import RateLimited
from monitor.api import alerts, audits, candidates, channels, models, queries, restrictions, tokens
from monitor.api.auth import MISSING, BearerToken, SessionLogin
from monitor.api.bodies import JsonBodyParser
from monitor.api.errors import ApiError, error_body, problem
from monitor.api.schemas import ERROR_SCHEMA
from monitor.gateway.restrictions import Restricted
from monitor.ingestion.validate import IngestError
from monitor.platform.unavailable import DATABASE_ERRORS, database_unavailable


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

    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The ids from when every view lived in one module, monitor/api.py: generated clients name methods by them.
        return f"monitor_api_{operation.view_func.__name__}"


api = MonitorApi(
    title="Membership-inference monitor API",
    version="1",
    urls_namespace="api",
    auth=[BearerToken(), SessionLogin()],
    parser=JsonBodyParser(),
    # The schema and the docs page name every endpoint: signed-in users of any role only, like every page.
    docs_decorator=roles.role_required(*roles.READ),
    description="Log queries, call models through the gateway, read audits and alerts. "
    "Authenticate with `Authorization: Bearer <token>` (see `manage.py issue_token`).",
)

api.add_router("", queries.router)
api.add_router("", models.router)
api.add_router("", alerts.router)
api.add_router("", channels.router)
api.add_router("", audits.router)
api.add_router("", restrictions.router)
api.add_router("", tokens.router)
api.add_router("", candidates.router)


def error_response(request: HttpRequest, status: int, error: str, details: list[dict] | None = None) -> HttpResponse:
    return api.create_response(request, error_body(error, details), status=status)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(request, exc.status, exc.error, exc.details)


@api.exception_handler(IngestError)
def on_ingest_error(request: HttpRequest, exc: IngestError) -> HttpResponse:
    """A refusal no router mapped itself: the one mapping from the domain's reasons to HTTP statuses."""
    return on_api_error(request, ApiError.from_ingest(exc))


@api.exception_handler(RateLimited)
def on_rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    if exc.too_large:
        return error_response(request, 413, str(exc))
    response = error_response(request, 429, str(exc))
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(Restricted)
def on_restricted(request: HttpRequest, exc: Restricted) -> HttpResponse:
    response = error_response(request, exc.status, str(exc))
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    """401 with a sentence saying what was wrong with the credentials, and the challenge RFC 6750 asks for."""
    problem_text = getattr(request, "auth_problem", MISSING)
    response = error_response(request, 401, problem_text)
    challenge = 'Bearer realm="api"'
    if problem_text != MISSING:
        challenge += ', error="invalid_token"'
    response["WWW-Authenticate"] = challenge
    return response


@api.exception_handler(NinjaValidationError)
def on_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    # ninja's locations start with where the value came from and the parameter name ("body", "body", "reason").
    details = [problem(".".join(str(p) for p in err.get("loc", []) if p not in ("body", "query", "path")) or None,
                       err.get("msg", "invalid")) for err in exc.errors]
    return error_response(request, 400, "invalid request", details)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, str(exc) or "not found")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ApiError):  # ninja's "Cannot parse request body": say what JsonBodyParser said
        return on_api_error(request, exc.__cause__)
    return error_response(request, exc.status_code, str(exc))


for _database_error in DATABASE_ERRORS:  # the database restarting: 503 + Retry-After, also under DEBUG
    api.add_exception_handler(_database_error, database_unavailable)
