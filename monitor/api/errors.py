"""The API's one error: raised anywhere under /api/v1/, answered as `{"error": "...", "details": [...]}` by the
handler in monitor/api/__init__.py, with each detail naming the offending row (`index`) and `field`."""
from __future__ import annotations

from monitor.ingestion.validate import IngestError, IngestRefusal

# The HTTP status of each reason ingestion and the gateway refuse a request for (the domain knows no HTTP).
INGEST_STATUS: dict[IngestRefusal, int] = {
    IngestRefusal.INVALID: 400,
    IngestRefusal.TOO_LARGE: 413,
    # The request is fine; the model's registration cannot answer it until an artifact is uploaded.
    IngestRefusal.NO_ARTIFACT: 409,
    # Deleted between the request's lookup of the model and the batch's write (the write found no model to hold).
    IngestRefusal.MODEL_GONE: 404,
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: list[dict] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, details or []

    @classmethod
    def from_ingest(cls, exc: IngestError) -> ApiError:
        """An ingestion or gateway refusal as the API answers it: its message and details, its reason's status."""
        return cls(INGEST_STATUS[exc.refusal], exc.message, exc.details)


def problem(field: str | None, message: str, *, index: int | None = None) -> dict:
    """One entry of an error's `details`."""
    return {"index": index, "field": field, "message": message}


def error_body(error: str, details: list[dict] | None = None) -> dict:
    """The JSON of every 4xx/5xx answer (documented as ERROR_SCHEMA)."""
    return {"error": error, "details": details or []}
