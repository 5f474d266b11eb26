"""An alert's evidence for people: first one sentence saying what the client (or the audit) did, then `key: value`
lines with times as UTC times, p-values as odds for a benign client, floats to 4 significant digits, long lists
cut, nested objects on one line. Email, Slack, the pages and the evidence report all show it this way. Pure."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

MAX_LIST_ITEMS = 12
MAX_NESTED_KEYS = 8
MAX_LINE = 300
# Evidence keys holding epoch seconds, shown as times.
TIME_KEYS = ("peak_window_start", "window_start", "first_seen", "last_seen")
P_VALUE_KEYS = ("p_value", "counter_p_value", "density_p_value")


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


def as_time(seconds: Any) -> str:
    """Epoch seconds as "2026-12-02 05:10 UTC" (the value unchanged if it is not a time)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds < 1e11:
        return str(seconds)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC").replace(":00 UTC", " UTC")


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


# ---- one sentence per signal -------------------------------------------------------------------------


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else short_value(value)


def _volume(e: Mapping[str, Any]) -> str:
    minutes = (e.get("window_seconds") or 600) / 60
    text = (f"Sent {_n(e.get('peak_window_count'))} queries in {minutes:g} minutes from "
            f"{as_time(e.get('peak_window_start'))}")
    baseline = e.get("baseline_mean_per_window") or 0
    if baseline:
        text += f", {e.get('peak_window_count', 0) / baseline:,.0f}× its own usual {baseline:.3g} per window"
    threshold = e.get("population_threshold")
    if threshold:
        text += f"; benign clients stay under {_n(threshold)}"
    return text + "."


def _sweep(e: Mapping[str, Any]) -> str:
    minutes = (e.get("window_seconds") or 3600) / 60
    text = (f"Sent {_n(e.get('max_records_near_one_point'))} distinct records around one point within {minutes:g} "
            f"minutes (benign clients stay under {_n(e.get('sweep_threshold'))}), in {_n(e.get('n_swept_cells'))} "
            "such neighbourhoods")
    if e.get("n_dense_queries"):
        text += (f"; {_n(e['n_dense_queries'])} of {_n(e.get('n_records_tested_for_density'))} records had close "
                 "neighbours among its own recent queries")
    return text + "."


def _boundary(e: Mapping[str, Any]) -> str:
    return (f"{_n(e.get('n_regions_near_boundary'))} of {_n(e.get('n_regions'))} distinct query regions sat at the "
            f"decision boundary ({_share(e.get('share_near_boundary'))}; benign clients {_share(e.get('base_rate'))}).")


def _proximity(e: Mapping[str, Any]) -> str:
    members = e.get("member_ids") or []
    return (f"Queried {_n(e.get('n_members_hit'))} training records in {_n(e.get('n_regions'))} distinct regions "
            f"({short_value(e.get('members_hit_per_region'))} per region; benign clients "
            f"{short_value(e.get('base_rate'))})" + (f", e.g. member ids {short_value(members[:5])}" if members else "") + ".")


def _shift(e: Mapping[str, Any]) -> str:
    benign = e.get("benign_mean_ranks") or []
    return (f"{_n(e.get('n_queries'))} queries unlike production traffic: mean distance rank "
            f"{short_value(e.get('mean_distance_rank'))}" + (f" where benign clients average {short_value(benign[0])}"
                                                             if benign else "") + ".")


def _linking(e: Mapping[str, Any]) -> str:
    return (f"Shares {_n(e.get('shared_fingerprints'))} rare query fingerprints with {e.get('strongest_link')} "
            f"(about {short_value(e.get('expected_shared'))} expected by chance); linked to "
            f"{_n(e.get('n_linked_clients'))} account(s): {short_value((e.get('linked_clients') or [])[:5])}.")


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


def _share(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else str(value)


SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "volume": _volume, "near_duplicate_sweep": _sweep, "boundary_probing": _boundary,
    "training_proximity": _proximity, "distribution_shift": _shift, "account_linking": _linking,
    "policy_breach": _breach, "weak_audit": _weak, "leakage_regression": _regression,
}


def describe(kind: str | None, evidence: Any) -> str:
    """What the client (or the audit) did, in one sentence ("" when the kind has no sentence)."""
    sentence = SENTENCES.get(kind or "")
    if sentence is None or not isinstance(evidence, Mapping):
        return ""
    try:
        return sentence(evidence)
    except (TypeError, ValueError, ZeroDivisionError):  # evidence from an older version: the lines still show it
        return ""


def evidence_lines(evidence: Any, limit: int = 12, *, kind: str | None = None) -> list[str]:
    """The sentence for `kind`, then the first `limit` keys of an evidence dict as readable lines ([] for
    anything that is not a dict)."""
    if not isinstance(evidence, dict):
        return []
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
