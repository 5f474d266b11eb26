"""A NUL character in a page's path, or in a query string or form field, answers 400 naming where, before any view.

PostgreSQL's text types cannot store NUL, nor compare against it: psycopg raises DataError, and a page filter, a
restriction's client id or an alert note carrying one was a 500 on PostgreSQL (SQLite stores it). No name, note,
reason, id or filter of this product means one. JSON bodies are checked where they are read, field by field (the
API's `Text` type and the ingestion validator); uploaded files by their own parsers.
"""
from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

NUL = "\x00"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_place(request: HttpRequest) -> tuple[str, str] | None:
    """(field, where) of a NUL character the request carries (("path", "the path"), ("q", "query parameter 'q'"),
    ("note", "form field 'note'")), or None. The API's own paths are left to the API, which answers an unknown
    slug or id with 404."""
    if NUL in request.path and not request.path.startswith("/api/"):
        return "path", "the path"
    for where, fields in (("query parameter", request.GET), ("form field", request.POST if _is_form(request) else None)):
        for key, values in fields.lists() if fields is not None else ():
            if NUL in key or any(NUL in value for value in values):
                name = key.replace(NUL, "")[:60]
                return name, f"{where} {name!r}"
    return None


def _is_form(request: HttpRequest) -> bool:
    """A page's form, read here no earlier than CSRF's check reads it (a multipart body's files are not looked at:
    a model file or a CSV may hold any byte). Not a multipart body sent to the API: parsing it consumes the stream,
    and the API reads its bodies whole (a multipart body to a JSON endpoint must still answer 415)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.content_type not in FORMS:
        return False
    return request.content_type != "multipart/form-data" or not request.path.startswith("/api/")


class NulCharacterMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        place = nul_place(request)
        if place is None:
            return self.get_response(request)
        field, where = place
        message = f"NUL (\\u0000) characters are not accepted ({where}); nothing was changed"
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "invalid request",
                                 "details": [{"index": None, "field": field, "message": message}]}, status=400)
        return HttpResponse(f"<!doctype html><html lang=\"en\"><head><title>Bad request</title></head><body>"
                            f"<h1>Bad request</h1><p>{escape(message)}</p></body></html>", status=400)
