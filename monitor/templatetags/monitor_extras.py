from typing import Any

from django import template

from monitor.alerts.evidence_text import evidence_lines as lines_of

register = template.Library()


@register.filter
def get_item(container: Any, key: Any) -> Any:
    """`{{ mapping|get_item:key }}` for dicts (string or int keys) and lists (int index)."""
    if container is None:
        return None
    if isinstance(container, dict):
        return container.get(key, container.get(str(key)))
    try:
        return container[int(key)]
    except (ValueError, IndexError, TypeError):
        return None


@register.filter
def split(text: str) -> list[str]:
    return text.split()


@register.filter
def evidence_lines(evidence: Any, kind: str | None = None) -> list[str]:
    """`{{ alert.evidence|evidence_lines:alert.kind }}`: the sentence for the alert's kind, then readable
    `key: value` lines (long lists cut), the way notifications show it."""
    return lines_of(evidence, limit=40, kind=kind)


def _scaled(value: Any, digits: Any, form: str) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value) * 100:{form}.{int(digits)}f}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def percent(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage ("0.0123" -> "1.23 %"); a dash for none."""
    text = _scaled(value, digits, "")
    return text if text == "—" else f"{text} %"


@register.filter
def signed_percent(value: Any, digits: int = 2) -> str:
    """A difference of fractions as signed percentage points ("+0.85 pt"); a dash for none."""
    text = _scaled(value, digits, "+")
    return text if text == "—" else f"{text} pt"
