"""An alert's evidence as short lines for people: `key: value`, floats to 4 significant digits, long lists cut,
nested objects on one line. Email, Slack, the pages and the evidence report all show it this way. Pure."""
from __future__ import annotations

from typing import Any

MAX_LIST_ITEMS = 12
MAX_NESTED_KEYS = 8
MAX_LINE = 300


def short_value(value: Any, *, depth: int = 0) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={short_value(v, depth=depth + 1)}" for k, v in list(value.items())[:MAX_NESTED_KEYS])
        return f"({text})" if depth else text
    if isinstance(value, (list, tuple)):
        shown = ", ".join(short_value(v, depth=depth + 1) for v in value[:MAX_LIST_ITEMS])
        return shown + (f" … (+{len(value) - MAX_LIST_ITEMS})" if len(value) > MAX_LIST_ITEMS else "")
    return str(value)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evidence_lines(evidence: Any, limit: int = 12) -> list[str]:
    """The first `limit` keys of an evidence dict as lines ([] for anything that is not a dict)."""
    if not isinstance(evidence, dict):
        return []
    return [f"{key}: {truncate(short_value(value), MAX_LINE)}" for key, value in list(evidence.items())[:limit]]
