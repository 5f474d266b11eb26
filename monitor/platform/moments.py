"""A time a person or a client sent, made one the server can compare and store (PURE): with a timezone, in UTC,
within years 1 to 9999 once in UTC."""
from __future__ import annotations

from datetime import UTC, datetime


def in_utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError saying what to send if it has no timezone (it cannot be compared with the server's
    time) or falls outside years 1 to 9999 in UTC (9999-12-31T23:00-14:00 does; it cannot be stored)."""
    if value.tzinfo is None:
        raise ValueError("needs a timezone (Z or +00:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within years 1 to 9999 in UTC") from None
