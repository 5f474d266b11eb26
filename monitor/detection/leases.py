"""The parts of a model's scan (`ScanShard`, leased with `ScanShard.objects.claim`): created at the model's
watermark, what each runs over which clients, and the model's watermark as the lowest of theirs."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from monitor.detection.detectors import Detector
from monitor.models import DetectorState, RegisteredModel, ScanShard


def scan_parts(model: RegisteredModel, count: int | None = None) -> list[ScanShard]:
    """The parts of the model's scan, created at the model's watermark on first use.

    A new part count (`SCAN_SHARDS`) takes over only where every current part has reached the same query
    id and none is being scanned, so no query is scanned twice or skipped for a client that changes part.
    """
    count = max(1, count or settings.SCAN_SHARDS)
    rows = list(ScanShard.objects.filter(model=model).order_by("count", "index"))
    if rows and {row.count for row in rows} == {count}:
        return rows
    now = timezone.now()
    if rows and (len({row.watermark_id for row in rows}) > 1 or any(r.lease_until and r.lease_until > now for r in rows)):
        return [row for row in rows if row.count == rows[0].count]  # finish the round first
    start = rows[0].watermark_id if rows else model_watermark(model)
    indices = [0] if count == 1 else range(count + 1)
    with transaction.atomic():
        ScanShard.objects.filter(model=model).exclude(count=count).delete()
        ScanShard.objects.bulk_create([ScanShard(model=model, count=count, index=i, watermark_id=start) for i in indices],
                                      ignore_conflicts=True)
    return list(ScanShard.objects.filter(model=model, count=count).order_by("index"))


def part_detectors(shard: ScanShard, detectors: list[Detector]) -> list[Detector]:
    """One part runs everything; of n > 1, parts 0..n-1 the per-client detectors, part n those comparing clients."""
    if shard.count == 1:
        return detectors
    compares = shard.index == shard.count
    return [detector for detector in detectors if detector.compares_clients == compares]


def part_clients(shard: ScanShard) -> tuple[int, int] | None:
    """The (index, count) client-hash shard a part reads, or None for a part that reads every client."""
    return None if shard.count == 1 or shard.index == shard.count else (shard.index, shard.count)


def model_watermark(model: RegisteredModel) -> int:
    """Where every part of the model's scan has got to."""
    return DetectorState.objects.filter(model=model).values_list("watermark_id", flat=True).first() or 0


def advance_model_watermark(model: RegisteredModel, count: int) -> None:
    """The model's watermark is where every part has got to (retention waits for it)."""
    lowest = ScanShard.objects.filter(model=model, count=count).aggregate(low=Min("watermark_id"))["low"]
    if lowest is not None:
        DetectorState.objects.filter(model=model).update(watermark_id=lowest, last_scan_at=timezone.now())
