"""Per-model detector state between scans, and the findings each scan produced."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitor.models.alerts import Alert
from monitor.models.registry import RegisteredModel
from monitor.models.vocabulary import CLIENT_ID_MAX_LENGTH
from monitor.platform.severity import Severity


class DetectorState(models.Model):
    """Where scanning of one model has got to (every part of it) and the detectors' calibration.

    `fingerprint_key` is the secret behind the keyed query fingerprints; it is stored encrypted.
    Calibration never holds member records or query feature values; the state the detectors carry between
    scans is in `ScannerState`, one row per client.
    """

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="detector_state")
    watermark_id = models.BigIntegerField(default=0, help_text="highest query id scanned")
    fingerprint_key = models.BinaryField()
    calibration = models.JSONField(default=dict, blank=True)
    calibration_window = models.JSONField(default=dict, blank=True)
    calibrated_at = models.DateTimeField(null=True, blank=True)
    last_scan_at = models.DateTimeField(null=True, blank=True)
    last_scan = models.JSONField(default=dict, blank=True)

    # Below this many client-days a calibration's tails rest on too few clients: bench/detect.py measured benign
    # incidents at 5-8 times the budget when 100 client-days calibrated 1,000 clients, and within it from 1,000.
    ADVISED_CLIENT_DAYS = 1000

    def __str__(self) -> str:
        return f"detectors of {self.model.slug} (scanned to #{self.watermark_id})"

    @property
    def calibration_advice(self) -> str:
        """What the model page and `scan_queries` say when the calibration window is too small for the budget."""
        client_days = (self.calibration_window or {}).get("client_days")
        if client_days is None or client_days >= self.ADVISED_CLIENT_DAYS:
            return ""
        advice = (f"Calibrated on {client_days:,.0f} client-days, fewer than the {self.ADVISED_CLIENT_DAYS:,} that hold "
                  "the false-alarm budget: expect more false alarms than budgeted until the detectors are calibrated "
                  "again on a larger window")
        if settings.DETECTOR_RECALIBRATE_GROWTH > 1:
            more = (settings.DETECTOR_RECALIBRATE_GROWTH - 1) * max(client_days, 1.0)
            return (f"{advice}. That happens by itself once the model has logged another {more:,.0f} client-days "
                    "(manage.py scan_queries --calibrate does it now).")
        return f"{advice} (manage.py scan_queries --calibrate)."


class ScannerState(models.Model):
    """What one detector carries between scans about one client: a bounded sketch (entries, counts, a few
    recent standardised points), never feature values in the clear or member records.

    A scan reads and writes only the rows of the clients in its chunk (the account-linking detector, which
    compares clients, reads its current window's rows); rows not seen within the detector's horizon expire.
    `seen_at` is the time (epoch seconds, query time) of the client's last query the row accounts for.
    """

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="scanner_states")
    detector = models.CharField(max_length=64)
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    # JSON as bytes: written and read whole, never queried inside; jsonb would parse every number on the server.
    data = models.BinaryField()
    seen_at = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["model", "detector", "seen_at"], name="scannerstate_expiry")]
        constraints = [models.UniqueConstraint(fields=["model", "detector", "client_id"],
                                               name="scannerstate_one_per_client")]

    def __str__(self) -> str:
        return f"{self.detector} state of {self.client_id} ({self.model_id})"


class ScanShardQuerySet(models.QuerySet["ScanShard"]):
    def claim(self, shard_id: int, *, seconds: int, now: datetime | None = None) -> bool:
        """Lease one part to this worker for `seconds` (a conditional UPDATE): one worker per part at a time, as beat
        ticks may overlap with a manual scan. A lease past its time (a worker that vanished) may be claimed again."""
        now = now or timezone.now()
        return bool(self.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=shard_id)
                    .update(lease_until=now + timedelta(seconds=seconds),
                            held_by=f"{socket.gethostname()}:{os.getpid()}"))

    def release(self, shard_id: int) -> None:
        """End this part's lease (the worker is done with it, whether the scan finished or failed)."""
        self.filter(pk=shard_id).update(lease_until=None)


class ScanShard(models.Model):
    """One part of a model's scan, claimed by one worker at a time.

    With `count` = 1 one part runs every detector over every query. With `count` = n > 1, parts 0..n-1
    each run the per-client detectors over the clients whose hash falls in them, and part n runs the
    detectors that compare clients (account linking) over all queries; several workers scan at once.
    """

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="scan_shards")
    count = models.PositiveSmallIntegerField()
    index = models.PositiveSmallIntegerField()
    watermark_id = models.BigIntegerField(default=0, help_text="highest query id this part has scanned")
    lease_until = models.DateTimeField(null=True, blank=True, help_text="a worker holds this part until then")
    held_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that claimed it last")
    last_scan_at = models.DateTimeField(null=True, blank=True)

    objects = ScanShardQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "count", "index"], name="scanshard_once")]

    def __str__(self) -> str:
        return f"part {self.index} of {self.count} ({self.model_id}, scanned to #{self.watermark_id})"


class DetectorFinding(models.Model):
    """One detector's finding about one client in one scanned range; unique, so a rescan adds nothing."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="findings")
    detector = models.CharField(max_length=64)
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    score = models.FloatField()
    severity = models.CharField(max_length=16, choices=Severity.choices())
    evidence = models.JSONField(default=dict)
    range_start = models.BigIntegerField()
    range_end = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="findings")

    class Meta:
        indexes = [models.Index(fields=["model", "created_at"], name="finding_model_created"),
                   models.Index(fields=["model", "client_id"], name="finding_model_client")]
        constraints = [models.UniqueConstraint(fields=["model", "detector", "client_id", "range_end"],
                                               name="finding_once_per_range")]
