"""What an undetected attacker can do per account-day on one model, and the per-client throttle that keeps it under
the target the security team set (OWASP AISVS 11.4.2: throttles sized to the threat).

Records: the most candidate records one account can test a day and stay under every detector's calibrated threshold
(`monitor.detection.detectors.evasion.best_rate`: one query per record, scored offline; the attacker picks the cover
it sends beside them, up to what the volume test and the per-client throttle in force let one client send a day).
TPR: the latest finished audit's headline at 1 % FPR, the strongest of the product's attacks on this model, which
such an attacker can run. Recommended throttle: none when the records are within the target; else the loosest day's
allowance under which the best attacker tests at most the target (`evasion.throttle_for`: candidates and cover
share the allowance, and within it the detectors bound the candidates; the target itself when nothing is
calibrated), spent no faster than over an hour (`per_minute`), with how many logged client-days of the last 14 it
would have cut.
"""
from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.utils import timezone

from audits.models import HEADLINE_FPR, RunStatus, headline_rate
from monitor.detection.detectors import evasion
from monitor.gateway import client_limit
from monitor.models import ClientDayRollup, DetectorState, RegisteredModel

MINUTES_PER_DAY = 1440
SPREAD_MINUTES = 60  # a day's allowance is spent no faster than over this many minutes
COST_DAYS = 14  # logged client-days the recommendation's cost is counted over


def _book(calibration: dict[str, Any], window: dict[str, Any]) -> int:
    """Distinct records (regions) a benign client sends a day in the calibration window."""
    client_days = float(window.get("client_days") or 0)
    for name in ("training_proximity", "boundary_probing"):
        units = (calibration.get(name) or {}).get("reference_units")
        if units and client_days > 0:
            return max(0, round(units / client_days))
    return 0


def _thresholds(calibration: dict[str, Any]) -> evasion.Thresholds | None:
    thresholds = evasion.Thresholds.from_calibration(calibration)
    if thresholds.proximity is None and thresholds.boundary is None and thresholds.window_count is None:
        return None
    return thresholds


def detector_bound(calibration: dict[str, Any], window: dict[str, Any],
                   per_day: int | None = None) -> tuple[int | None, str]:
    """Records per account-day the calibrated detectors let through (within a throttle of `per_day` queries a client-
    day when one is in force), and what that reading rests on."""
    thresholds = _thresholds(calibration)
    if thresholds is None:
        return None, "no calibrated detector bounds it"
    best = evasion.best_rate(thresholds, benign_book=_book(calibration, window), per_day=per_day)
    within = "" if per_day is None else f", cover and candidates within the throttle's {per_day:,} queries a day"
    text = (f"predicted from the detectors' calibration of {window.get('client_days') or 0:g} client-days "
            f"({thresholds.describe()}): one query per candidate record, half of them members, "
            f"{'no cover' if best.book == 0 else f'{best.book:,} fresh cover records'} a day{within}, each "
            f"detector's block (and its carried test over the client's week, where calibrated) kept quiet with a 90 % "
            f"chance and the volume under 80 % of its threshold")
    return best.records, text


def detector_throttle(calibration: dict[str, Any], window: dict[str, Any], target: int) -> int:
    """The loosest per-client day's allowance under which the best attacker tests at most `target` records a day."""
    thresholds = _thresholds(calibration)
    if thresholds is None:
        return target
    upper = evasion.volume_per_day(thresholds) or client_limit.MAX_CLIENT_QUERIES
    return evasion.throttle_for(thresholds, target, benign_book=_book(calibration, window),
                                upper=min(upper, client_limit.MAX_CLIENT_QUERIES))


_CACHE: dict[tuple[Any, ...], Any] = {}
MAX_CACHED = 4096


def _cached(key: tuple[Any, ...], compute: Any) -> Any:
    """`compute()` once per key in this process (a model list reads every model's statement): keys hold the model
    and its calibration time, so a new calibration is read afresh."""
    if key not in _CACHE:
        if len(_CACHE) >= MAX_CACHED:
            _CACHE.clear()
        _CACHE[key] = compute()
    return _CACHE[key]


def _tpr(model: RegisteredModel) -> tuple[dict[str, Any], Any]:
    run = model.audit_runs.filter(status=RunStatus.DONE).order_by("-finished_at", "-pk").first()
    return (headline_rate(run.headline, HEADLINE_FPR) if run is not None else {}), run


def _cost(model: RegisteredModel, per_day: int) -> dict[str, int]:
    """Logged client-days of the last COST_DAYS days (the folded rollups) over `per_day` queries."""
    since = (timezone.now() - timedelta(days=COST_DAYS)).date()
    days = ClientDayRollup.objects.filter(model=model, day__gte=since)
    return {"client_days_over": days.filter(count__gt=per_day).count(), "client_days": days.count()}


def _throttle_per_day(current: dict[str, int | None]) -> int | None:
    """The queries a day the throttle in force lets one client send (the tighter of its two limits), None: none."""
    per_minute, per_day = current["per_minute"], current["per_day"]
    limits = [limit for limit in (per_day, per_minute and per_minute * MINUTES_PER_DAY) if limit]
    return min(limits) if limits else None


def undetected_attacker(model: RegisteredModel) -> dict[str, Any]:
    """`{records_per_account_day, tpr_at_1pct_fpr, recommended_rate_limit: {per_minute, per_day, ...}, basis, ...}`,
    present on every model: the figures are null, and `basis` says what is missing, before the first calibration
    (the first scan) or the first finished audit."""
    return _assess(model)[0]


def _assess(model: RegisteredModel) -> tuple[dict[str, Any], str]:
    """The statement and its throttle clause (why a throttle is, or is not, recommended)."""
    state = (DetectorState.objects.filter(model=model).values("calibration", "calibration_window", "calibrated_at")
             .first()) or {}
    calibration = state.get("calibration") or {}
    window = state.get("calibration_window") or {}
    current = client_limit.current(model)
    target = model.undetected_records_target
    basis: list[str] = []
    throttled = _throttle_per_day(current)
    calibrated_at = state.get("calibrated_at")
    detected, how = (None, "") if not calibration else _cached(
        ("bound", model.pk, calibrated_at, throttled), lambda: detector_bound(calibration, window, throttled))
    if not calibration:
        basis.append("records: not known before the detectors are calibrated (the first scan of this model's traffic)")
    else:
        basis.append(f"records: {how}")
    records = detected
    if throttled is not None and (records is None or throttled < records):
        records = throttled
        basis.append(f"the per-client throttle in force ({throttled:,} queries a day) binds before the detectors")
    rate, run = _tpr(model)
    tpr = rate.get("value")
    if run is None:
        basis.append("TPR: not known before the first finished audit")
    elif tpr is None:
        basis.append(f"TPR: audit #{run.pk} has no headline at 1 % FPR")
    else:
        basis.append(f"TPR: audit #{run.pk}'s headline at 1 % FPR ({rate.get('attack')}, interval "
                     f"{rate.get('low', 0):.2%} to {rate.get('high', 0):.2%}), the strongest attack the product "
                     "ran, which such an attacker can run too")
    recommended: dict[str, Any] = {"per_minute": None, "per_day": None, "client_days_over": None, "client_days": None}
    if records is None:
        basis.append("throttle: no recommendation until the records are known, once the detectors are calibrated")
    elif records <= target:
        basis.append(f"throttle: none needed, {records:,} records an account-day is within the target of {target:,}")
    else:
        per_day = target if not calibration else _cached(
            ("throttle", model.pk, calibrated_at, target), lambda: detector_throttle(calibration, window, target))
        recommended = {"per_minute": max(1, math.ceil(per_day / SPREAD_MINUTES)), "per_day": per_day,
                       **_cost(model, per_day)}
        cost = (f"{recommended['client_days_over']:,} of the {recommended['client_days']:,} client-days of the last "
                f"{COST_DAYS} days in the rollups sent more" if recommended["client_days"]
                else "no client-day is in the rollups yet to count what it would cut")
        why = ("however it splits them" if per_day == target else
               "with cover and candidates sharing the allowance, as the detectors bound the candidates within it")
        basis.append(f"throttle: {per_day:,} queries a client-day keeps an account at the target of {target:,} records "
                     f"or fewer {why} (spent over an hour at least: {recommended['per_minute']:,} a minute); {cost}")
    statement = {
        "records_per_account_day": records,
        "tpr_at_1pct_fpr": tpr,
        "tpr_interval": [rate["low"], rate["high"]] if tpr is not None and "low" in rate else None,
        "audit_id": run.pk if run is not None else None,
        "target_records_per_account_day": target,
        "current_rate_limit": current,
        "recommended_rate_limit": recommended,
        "basis": "; ".join(basis) + ".",
        "per_account": "an attacker with K accounts tests K times as many; the account-linking detector looks for them",
    }
    return statement, basis[-1] + "."


class NoRecommendation(Exception):
    """No throttle is recommended (the records are within the target, or not known yet); `basis` says why."""

    def __init__(self, basis: str) -> None:
        super().__init__(basis)
        self.basis = basis


def apply_recommended(model: RegisteredModel, *, target: int | None = None, actor: Any = None,
                      ip: str | None = None) -> RegisteredModel:
    """Apply the throttle recommended now (for `target` when given, which is stored too), in the security trail with
    the statement it rests on. Raises NoRecommendation (nothing changed) when none is recommended, and
    client_limit.RateLimitError for a bad target."""
    if target is not None:
        model.undetected_records_target = client_limit.checked_target(target)
    statement, throttle = _assess(model)
    recommended = statement["recommended_rate_limit"]
    if recommended["per_day"] is None:
        raise NoRecommendation(throttle)
    return client_limit.set_limits(model, per_minute=recommended["per_minute"], per_day=recommended["per_day"],
                                   target=target, actor=actor, ip=ip,
                                   basis={key: statement[key] for key in ("records_per_account_day", "tpr_at_1pct_fpr",
                                                                          "audit_id", "recommended_rate_limit", "basis")})
