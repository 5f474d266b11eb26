"""Who writes a change's trail entry: a domain writer that records its own (token.issued, model.registered, the
API's model.updated) makes its saves inside `recorded_by_caller()`, and the model-layer receivers
(monitor.trail.changes) stay silent for them, so each change is in the trail once. Imports nothing of the
project, so the model layer can use it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_caller_records: ContextVar[bool] = ContextVar("trail_caller_records", default=False)


@contextmanager
def recorded_by_caller() -> Iterator[None]:
    """The caller writes the trail entry for the changes made inside this block; the receivers stay silent."""
    token = _caller_records.set(True)
    try:
        yield
    finally:
        _caller_records.reset(token)


def caller_records() -> bool:
    """True inside a `recorded_by_caller()` block."""
    return _caller_records.get()
