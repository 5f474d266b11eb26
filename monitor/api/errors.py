"""The API's one error: raised anywhere under /api/v1/, answered as `{"error": "...", "details": [...]}` by the
handler in monitor/api/__init__.py, with each detail naming the offending row (`index`) and `field`."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: list[dict] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, details or []


def problem(field: str | None, message: str, *, index: int | None = None) -> dict:
    """One entry of an error's `details`."""
    return {"index": index, "field": field, "message": message}


def error_body(error: str, details: list[dict] | None = None) -> dict:
    """The JSON of every 4xx/5xx answer (documented as ERROR_SCHEMA)."""
    return {"error": error, "details": details or []}
