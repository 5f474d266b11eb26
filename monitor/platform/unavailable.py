"""The database unreachable (restarting, failing over, out of connections): answer 503 with Retry-After.

Without this a request that meets a dropped or refused database connection is an HTML "Server Error (500)",
even on the JSON API, and clients cannot tell a bug from an outage. Django drops the broken connection at the
end of the request (close_if_unusable_or_obsolete), so the client's retry gets a fresh one.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)
# OperationalError covers refused and dropped connections as well as deadlocks and serialization failures: all
# worth retrying. InterfaceError is psycopg's "the connection is already closed".
DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
MESSAGE = "database unavailable; retry shortly"
PAGE = ("<!doctype html><html lang=\"en\"><head><title>Temporarily unavailable</title></head><body>"
        "<h1>Temporarily unavailable</h1><p>The database cannot be reached right now; try again in a few seconds."
        "</p></body></html>")


def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.warning("database unavailable during %s %s: %s: %s", request.method, request.path, type(exc).__name__,
                str(exc).strip()[:200])
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"error": MESSAGE, "details": []}, status=503)
    else:
        response = HttpResponse(PAGE, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turns a database connection error raised by any view into the 503 above."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable(request, exception)
        return None
