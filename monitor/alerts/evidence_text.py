"""An alert's evidence for people: first one sentence saying what the client (or the audit) did, then `key: value`
lines with times as UTC times, p-values as odds for a benign client, floats to 4 significant digits, long lists
cut, nested objects on one line. Email, Slack, the pages and the evidence report all show it this way. Each detector
says its own sentence (`Detector.describe`); the audit alerts' sentences are here. Training-member record ids are
left out unless asked for (`without_member_ids`): only the roles that may look a record up see them. Pure."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from monitor.detection.detectors import get_detector
from monitor.detection.detectors.wording import as_time, short_value

MAX_LINE = 300
# Evidence keys holding epoch seconds, shown as times.
TIME_KEYS = ("peak_window_start", "window_start", "first_seen", "last_seen")
P_VALUE_KEYS = ("p_value", "counter_p_value", "density_p_value")
# Keys whose value lists training-member record ids (detector evidence, an audit's most exposed records). Where ids may
# not be shown each becomes a count under "n_" + the key, so the reader still learns how many.
MEMBER_ID_KEYS = frozenset({"member_ids", "most_exposed_member_ids", "top_exposed"})


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def odds(p: Any, *, unit: str = "for a benign client") -> str:
    """A probability as odds people can weigh: "about 1 in 10^180 for a benign client", "about 1 in 2,500 …"."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or p < 0:
        return str(p)
    if p >= 0.5:
        return f"{p:.2g}: no surprise {unit}"
    if p <= 0:
        return f"below 1 in 10^300 {unit}"
    exponent = -math.log10(p)
    if exponent >= 6:
        return f"about 1 in 10^{math.floor(exponent)} {unit}"
    return f"about 1 in {round(1 / p, -int(math.floor(math.log10(1 / p))) + 1):,.0f} {unit}"


def readable(key: str, value: Any) -> str:
    if key in TIME_KEYS:
        return as_time(value)
    if key in P_VALUE_KEYS:
        return odds(value)
    if key == "false_alarm_rate" and isinstance(value, (int, float)) and 0 < value < 1:
        return f"1 in {round(1 / value):,} benign client-days"
    return short_value(value)


# ---- the audit alerts' sentences (each detector has its own: Detector.describe) -----------------------


def _breach(e: Mapping[str, Any]) -> str:
    parts = [f"{b.get('metric')} {short_value(b.get('value'))} exceeds the limit {short_value(b.get('limit'))}"
             + (f" ({b['attack']})" if b.get("attack") else "") for b in e.get("breaches") or []]
    return "Audit: " + "; ".join(parts) + "." if parts else ""


def _weak(e: Mapping[str, Any]) -> str:
    reasons = e.get("reasons") or []
    return "Weak audit: " + reasons[0] if reasons else ""


def _regression(e: Mapping[str, Any]) -> str:
    return (f"Audit: TPR at 1 % FPR rose from {short_value(e.get('previous'))} to {short_value(e.get('now'))} since "
            f"audit {e.get('previous_run')}.")


AUDIT_SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "policy_breach": _breach, "weak_audit": _weak, "leakage_regression": _regression,
}


def _sentence_for(kind: str) -> Callable[[Mapping[str, Any]], str] | None:
    """The audit kind's sentence or the registered detector's `describe`; None for a kind neither knows (an alert
    stored by an older version under a detector since renamed or removed)."""
    if kind in AUDIT_SENTENCES:
        return AUDIT_SENTENCES[kind]
    try:
        return get_detector(kind).describe
    except KeyError:
        return None


def _ids(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]


def without_member_ids(value: Any) -> Any:
    """A copy of `value` with every list of member ids, at any depth (an incident keeps each detector's evidence under
    `signals`), replaced by its length under "n_" + its key. Anything else is kept as it is."""
    if isinstance(value, Mapping):
        kept: dict[Any, Any] = {}
        for key, item in value.items():
            if key in MEMBER_ID_KEYS:
                kept[f"n_{key}"] = len(_ids(item))
            else:
                kept[key] = without_member_ids(item)
        return kept
    if isinstance(value, (list, tuple)):
        return [without_member_ids(item) for item in value]
    return value


def member_id_count(value: Any) -> int:
    """How many distinct member ids `value` holds under MEMBER_ID_KEYS, at any depth (what a trail entry records of
    a read: the number, never the ids)."""
    found: set[str] = set()

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            for key, inner in item.items():
                if key in MEMBER_ID_KEYS:
                    found.update(str(record_id) for record_id in _ids(inner))
                else:
                    walk(inner)
        elif isinstance(item, (list, tuple)):
            for inner in item:
                walk(inner)

    walk(value)
    return len(found)


def describe(kind: str | None, evidence: Any) -> str:
    """What the client (or the audit) did, in one sentence ("" when the kind has no sentence)."""
    sentence = _sentence_for(kind or "")
    if sentence is None or not isinstance(evidence, Mapping):
        return ""
    try:
        return sentence(evidence)
    except (TypeError, ValueError, ZeroDivisionError):  # evidence from an older version: the lines still show it
        return ""


def evidence_lines(evidence: Any, limit: int = 12, *, kind: str | None = None, member_ids: bool = False) -> list[str]:
    """The sentence for `kind`, then the first `limit` keys of an evidence dict as readable lines ([] for
    anything that is not a dict). Member ids are shown only with `member_ids=True`, else their counts."""
    if not isinstance(evidence, dict):
        return []
    if not member_ids:
        evidence = without_member_ids(evidence)
    sentence = describe(kind, evidence)
    # An incident folds several detectors and accounts: one sentence per other signal, then the accounts.
    signals = evidence.get("signals") if isinstance(evidence.get("signals"), dict) else {}
    folded = [f"{detector}: " + (describe(detector, signal.get("evidence")) or f"score {signal.get('score')}")
              + (f" (account {signal.get('client_id')})" if signal.get("client_id") else "")
              for detector, signal in sorted(signals.items()) if detector != kind and isinstance(signal, dict)]
    accounts = evidence.get("accounts") or []
    if len(accounts) > 1:
        folded.append(truncate(f"accounts ({evidence.get('n_accounts', len(accounts))}): {', '.join(map(str, accounts))}",
                               MAX_LINE))
    skip = {"signals", "accounts"}
    lines = [f"{key}: {truncate(readable(key, value), MAX_LINE)}" for key, value in
             [(k, v) for k, v in evidence.items() if k not in skip][:limit]]
    return [*([sentence] if sentence else []), *folded, *lines]
