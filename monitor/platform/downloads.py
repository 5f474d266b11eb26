"""A file the browser saves rather than shows: one response shape for every download (evidence bundles, CSV
exports, hardened models), from the pages and the API alike."""
from __future__ import annotations

from django.http import HttpResponse


def attachment(body: bytes | str, *, filename: str, content_type: str,
               headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type, headers=headers)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
