"""Thirty days of demo history, written rather than replayed: the hourly and client-day rollups, one scheduled
audit a day per model, the alerts and findings the story implies. Each model's daily audits are copies of its real
audit today with the headline moved along the story (marked `"demo_history": true` in their config, so nobody
mistakes them for measurements): the Adult forest leaks half as much until its retrain on day 18 doubles it
(version 2, a regression alert), the hardened forest and the label-only one stay flat; a low-and-slow attacker
tests candidate records in week 2 and is restricted; today's live attacker is real traffic, scanned for real."""
from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from audits.attacks.verdict import AuditAlertKind
from audits.models import AuditRun, RunStatus, Trigger
from monitor.alerts import timeline
from monitor.models import (
    Alert,
    AlertSource,
    ClientDayRollup,
    ClientRestriction,
    DetectorFinding,
    ModelArtifact,
    ModelHourRollup,
    RegisteredModel,
    Severity,
)

DAYS = 30
RETRAIN_DAY = 18  # day 1 is 30 days ago
SLOW_ATTACKER = "client-slow-4e1b"
SLOW_DAYS = range(8, 13)  # week 2


def day_start(day: int, *, now: datetime) -> datetime:
    """Midnight UTC of story day `day` (1 = thirty days ago, 30 = yesterday)."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS - day + 1)


def write_traffic(model: RegisteredModel, *, now: datetime, clients: int, per_day: float, seed: int,
                  slow_attacker: bool = False) -> int:
    """Hourly totals with a diurnal rhythm and per-client days, for the days before the real traffic's day."""
    rng = np.random.default_rng(seed)
    weights = np.exp(-0.5 * ((np.arange(24) - 14) / 3.5) ** 2) + 0.15
    weights /= weights.sum()
    volumes = rng.choice([15, 40, 120], p=[0.5, 0.4, 0.1], size=clients)
    hours, client_days, total = [], [], 0
    for day in range(1, DAYS):
        start = day_start(day, now=now)
        if start >= now - timedelta(hours=24):
            break
        daily = rng.poisson(volumes * per_day / volumes.sum() * (1.1 if start.weekday() < 5 else 0.6))
        for client, count in enumerate(daily.tolist()):
            if count:
                client_days.append(ClientDayRollup(model=model, client_id=f"client-{client:04d}", day=start.date(),
                                                   count=count, confidence_sum=0.82 * count))
        if slow_attacker and day in SLOW_DAYS:
            client_days.append(ClientDayRollup(model=model, client_id=SLOW_ATTACKER, day=start.date(), count=38,
                                               confidence_sum=0.97 * 38))
            daily = np.append(daily, 38)
        for hour, count in enumerate(rng.multinomial(int(daily.sum()), weights).tolist()):
            hours.append(ModelHourRollup(model=model, hour=start + timedelta(hours=hour), count=count,
                                         confidence_sum=0.83 * count))
        total += int(daily.sum())
    ModelHourRollup.objects.bulk_create(hours, batch_size=2000)
    ClientDayRollup.objects.bulk_create(client_days, batch_size=2000)
    return total


def _scaled(result: dict, factor: float, rng: np.random.Generator) -> dict:
    """The real result with every headline TPR (and ε, AUC advantage) moved by `factor`, plus a little day-to-day
    noise inside its interval."""
    moved = copy.deepcopy(result)
    headline = moved.get("headline") or {}
    jitter = float(rng.normal(1.0, 0.04))
    for rate in (headline.get("tpr_at_fpr") or {}).values():
        for key in ("value", "low", "high"):
            if rate.get(key) is not None:
                rate[key] = float(min(1.0, rate[key] * factor * jitter))
    if headline.get("epsilon_lower") is not None:
        headline["epsilon_lower"] = float(headline["epsilon_lower"] * (0.5 + 0.5 * factor) * jitter)
    if headline.get("auc") is not None:
        headline["auc"] = float(0.5 + (headline["auc"] - 0.5) * factor * jitter)
    return moved


def write_audits(model: RegisteredModel, real: AuditRun, *, now: datetime, seed: int,
                 factor_on: Any = lambda day: 1.0, version_on: Any = lambda day: 1) -> list[AuditRun]:
    """One scheduled audit a day at 02:00 UTC, days 1-29, copied from `real` and moved by `factor_on(day)`."""
    rng = np.random.default_rng(seed)
    runs = []
    for day in range(1, DAYS):
        at = day_start(day, now=now) + timedelta(hours=2)
        if at >= real.created_at:
            break
        factor = factor_on(day)
        result = _scaled(real.result or {}, factor, rng)
        tpr = ((result.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
        limit = (real.config.get("limits") or {}).get("tpr_at_1pct_fpr", 0.02)
        breached = (tpr.get("value") or 0) > limit
        runs.append(AuditRun(
            model=model, status=RunStatus.DONE, trigger=Trigger.SCHEDULE, slot=at, progress=100, step="done",
            created_at=at, started_at=at, heartbeat_at=at + timedelta(minutes=1), finished_at=at + timedelta(minutes=1),
            model_version=version_on(day), artifact_sha256=real.artifact_sha256, data_sha256=real.data_sha256,
            config={**real.config, "demo_history": True}, environment=real.environment, result=result,
            policy_result={"passed": not breached, "verdict": "breached" if breached else "passed", "weak_audit": [],
                           "breaches": [{"metric": "tpr_at_1pct_fpr", "value": tpr.get("value"), "limit": limit,
                                         "attack": tpr.get("attack"), "low": tpr.get("low"), "high": tpr.get("high")}]
                           if breached else [], "regression": None}))
    AuditRun.objects.bulk_create(runs)
    return runs


def _alert(model: RegisteredModel, *, kind: str, client_id: str, **fields: Any) -> Alert:
    fingerprint = hashlib.sha256(f"demo-history\x1f{model.slug}\x1f{kind}\x1f{client_id}".encode()).hexdigest()[:32]
    return timeline.record_past_alert(model, fingerprint=fingerprint, kind=kind, client_id=client_id, **fields)


def write_story(forest: RegisteredModel, *, now: datetime, real_tpr: float) -> None:
    """The retrain's regression alert on day 18 and the low-and-slow attacker of week 2."""
    retrain = day_start(RETRAIN_DAY, now=now) + timedelta(hours=2, minutes=1)
    _alert(forest, source=AlertSource.AUDIT, kind=AuditAlertKind.LEAKAGE_REGRESSION, severity=Severity.WARNING, client_id="",
           title=f"Audit: TPR@1%FPR rose from {real_tpr / 2:.3g} to {real_tpr:.3g}",
           evidence={"metric": "tpr_at_1pct_fpr", "previous": real_tpr / 2, "now": real_tpr, "factor": 2.0},
           events=[("opened", retrain, "system", {"severity": "warning"}),
                   ("acknowledged", retrain + timedelta(hours=7), "demo-security",
                    {"note": "retrain of day 18 (version 2): comparing with the hardened candidate"})],
           status="acknowledged")
    first = day_start(SLOW_DAYS[1], now=now) + timedelta(hours=15)
    evidence = {"n_members_hit": 31, "n_regions": 34, "members_hit_per_region": 0.91, "base_rate": 0.02,
                "member_ids": ["1187", "2044", "2919", "3310", "507"], "window_days": 5,
                "note": "38 queries a day, at a benign client's rate"}
    _alert(forest, source=AlertSource.DETECTOR, kind="training_proximity", severity=Severity.CRITICAL, client_id=SLOW_ATTACKER,
           title=f"training_proximity: {SLOW_ATTACKER} queried training records across five days",
           evidence=evidence,
           events=[("opened", first, "system", {"severity": "warning"}),
                   ("escalated", first + timedelta(days=1), "system", {"from": "warning", "to": "critical"}),
                   ("acknowledged", first + timedelta(days=1, hours=1), "demo-security",
                    {"note": "restricted to labels only, then blocked"}),
                   ("resolved", first + timedelta(days=3), "demo-security", {"note": "API key revoked by the client team"})],
           status="resolved")
    ClientRestriction.objects.create(
        model=forest, client_id=SLOW_ATTACKER, action="block", reason="low-and-slow candidate testing (demo history)",
        until=first + timedelta(days=3), created_at=first + timedelta(days=1, hours=1),
        lifted_at=first + timedelta(days=3), lift_reason="expired")
    DetectorFinding.objects.bulk_create([
        DetectorFinding(model=forest, detector="training_proximity", client_id=SLOW_ATTACKER, score=4.0 + day,
                        severity="warning" if day < 10 else "critical", evidence=evidence, range_start=day, range_end=day,
                        created_at=day_start(day, now=now) + timedelta(hours=16))
        for day in SLOW_DAYS[1:]])


@transaction.atomic
def write_history(*, forest: RegisteredModel, forest_run: AuditRun, others: list[tuple[RegisteredModel, AuditRun]],
                  now: datetime | None = None) -> dict[str, int]:
    """Everything above, for the demo's three models (idempotence is seed_demo's: it runs once)."""
    now = now or timezone.now()
    real_tpr = float(forest_run.tpr_at().get("value") or 0.0)
    # The retrain: version 2 is today's artifact; version 1's bytes are the same file (the demo has one forest).
    current = forest.current_artifact()
    if current is not None and forest.version == 1:
        ModelArtifact.objects.create(model=forest, version=2, format=current.format, data=current.data,
                                     sha256=current.sha256, size=current.size, filename="adult-rf-retrained.skops",
                                     created_at=day_start(RETRAIN_DAY, now=now))
        RegisteredModel.objects.filter(pk=forest.pk).update(version=2)
        AuditRun.objects.filter(pk=forest_run.pk).update(model_version=2)
    counts = {"queries": write_traffic(forest, now=now, clients=200, per_day=9000, seed=1, slow_attacker=True)}
    counts["audits"] = len(write_audits(forest, forest_run, now=now, seed=2,
                                        factor_on=lambda day: 0.5 if day < RETRAIN_DAY else 1.0,
                                        version_on=lambda day: 1 if day < RETRAIN_DAY else 2))
    for index, (model, run) in enumerate(others):
        counts["queries"] += write_traffic(model, now=now, clients=60 + 40 * index, per_day=2500, seed=10 + index)
        counts["audits"] += len(write_audits(model, run, now=now, seed=20 + index))
    write_story(forest, now=now, real_tpr=real_tpr)
    return counts
