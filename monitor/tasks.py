"""Thin Celery tasks: take ids, call plain functions."""
from __future__ import annotations

import socket
from dataclasses import asdict

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from monitor.access.ratelimit import prune_usage
from monitor.alerts.lifecycle import housekeeping
from monitor.alerts.outbox import deliver_due, queue_digests
from monitor.detection.scanning import Skipped, prepare_scan, scan_model, scan_part
from monitor.gateway import restrictions
from monitor.ingestion import partitions, retention, rollups
from monitor.models import RegisteredModel, WorkerHeartbeat
from monitor.trail.models import LoginFailureWindow


@shared_task(time_limit=30, soft_time_limit=20)
def record_heartbeat(name: str = "beat") -> str:
    """Proves beat schedules and a worker executes (shown on the overview page)."""
    WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"seen_at": timezone.now(), "hostname": socket.gethostname()}
    )
    return name


@shared_task(time_limit=300, soft_time_limit=270)
def deliver_notifications() -> dict:
    return deliver_due()


@shared_task(time_limit=300, soft_time_limit=270)
def alert_housekeeping() -> dict:
    return housekeeping()


@shared_task(time_limit=120, soft_time_limit=100)
def prune_token_usage() -> int:
    return prune_usage()


@shared_task(time_limit=600, soft_time_limit=570)
def send_digests() -> int:
    queued = queue_digests()
    deliver_due()
    return queued


@shared_task(time_limit=120, soft_time_limit=100)
def scan_all_models() -> list[int]:
    """Fan out: one scan task per model, so a slow model does not hold up the others."""
    ids = list(RegisteredModel.objects.values_list("pk", flat=True))
    for model_id in ids:
        scan_model_queries.delay(model_id)
    return ids


@shared_task(time_limit=1800, soft_time_limit=1750)
def scan_model_queries(model_id: int) -> dict:
    """One part: scan here. Several (`SCAN_SHARDS` > 1): one task per part, all up to the same query id."""
    model = RegisteredModel.objects.filter(pk=model_id).first()
    if model is None:
        return {}
    plan = prepare_scan(model)
    if isinstance(plan, Skipped) or len(plan.parts) == 1:
        return asdict(scan_model(model))
    for shard in plan.parts:
        scan_model_part.delay(model_id, shard.index, plan.upto)
    return {"model": model.slug, "parts": len(plan.parts), "upto": plan.upto}


@shared_task(time_limit=1800, soft_time_limit=1750)
def scan_model_part(model_id: int, index: int, upto: int) -> dict:
    model = RegisteredModel.objects.filter(pk=model_id).first()
    if model is None:
        return {}
    return asdict(scan_part(model, index, upto=upto))


@shared_task(time_limit=120, soft_time_limit=100)
def expire_client_restrictions() -> int:
    """Every minute: restrictions past their `until` (no longer applied) are recorded as expired in the trail."""
    return restrictions.expire_due()


@shared_task(time_limit=120, soft_time_limit=100)
def fold_login_failures() -> int:
    """Every minute: the failed-login counts of minutes that are over, one trail entry per busy address-minute."""
    return LoginFailureWindow.objects.fold(now=timezone.now())


@shared_task(time_limit=600, soft_time_limit=570)
def fold_query_rollups() -> list[dict]:
    """Every 30 s: count the queries logged since the last fold into the dashboards' rollups."""
    return [asdict(folded) for folded in rollups.fold_all()]


@shared_task(time_limit=1800, soft_time_limit=1750)
def maintain_query_partitions() -> dict:
    """Hourly: the query log's partitions for the days ahead, and rows parked in DEFAULT moved to their own."""
    return retention.maintain_partitions(ahead=settings.QUERY_PARTITIONS_AHEAD_DAYS)


@shared_task(time_limit=600, soft_time_limit=570)
def analyze_query_partitions() -> list[str]:
    """Every minute: statistics for the query log's partitions that hold rows and have none yet (autovacuum off or
    behind), without which counting a model's unfolded queries reads all of them."""
    return partitions.analyze_new_partitions()


@shared_task(time_limit=3600, soft_time_limit=3500)
def enforce_query_retention() -> list[str]:
    """Daily: drop each model's raw queries past its retention (what the scanner has read)."""
    return [line for result in retention.enforce_all() for line in result.lines()]
