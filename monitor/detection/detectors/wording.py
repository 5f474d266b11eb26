"""How evidence values read to people: floats to 4 significant digits, counts with thousands separators, shares as
percentages, epoch seconds as UTC times, long lists cut. The detectors' sentences and `monitor.alerts.evidence_text`
use the same rules. Pure."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_LIST_ITEMS = 12
MAX_NESTED_KEYS = 8


def short_value(value: Any, *, depth: int = 0) -> str:
    """A value on one line: floats to 4 significant digits, dicts as `k=v`, lists cut after MAX_LIST_ITEMS."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={short_value(v, depth=depth + 1)}" for k, v in list(value.items())[:MAX_NESTED_KEYS])
        return f"({text})" if depth else text
    if isinstance(value, (list, tuple)):
        shown = ", ".join(short_value(v, depth=depth + 1) for v in value[:MAX_LIST_ITEMS])
        return shown + (f" … (+{len(value) - MAX_LIST_ITEMS})" if len(value) > MAX_LIST_ITEMS else "")
    return str(value)


def as_time(seconds: Any) -> str:
    """Epoch seconds as "2026-12-02 05:10 UTC" (the value unchanged if it is not a time)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds < 1e11:
        return str(seconds)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC").replace(":00 UTC", " UTC")


def as_count(value: Any) -> str:
    """An integer with thousands separators ("12,000"); anything else as `short_value`."""
    return f"{value:,}" if isinstance(value, int) else short_value(value)


def as_share(value: Any) -> str:
    """A fraction as a percentage ("3.5%")."""
    return f"{value:.1%}" if isinstance(value, (int, float)) else str(value)
