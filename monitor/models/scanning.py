"""Per-model detector state between scans, and the findings each scan produced."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from monitor.models.alerts import Alert
from monitor.models.registry import RegisteredModel


class DetectorState(models.Model):
    """Where scanning of one model has got to, the detectors' calibration and carried state.

    `fingerprint_key` is the secret behind the keyed query fingerprints; it is stored encrypted.
    Neither calibration nor state ever holds member records or query feature values.
    """

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="detector_state")
    watermark_id = models.BigIntegerField(default=0, help_text="highest query id scanned")
    fingerprint_key = models.BinaryField()
    calibration = models.JSONField(default=dict, blank=True)
    calibration_window = models.JSONField(default=dict, blank=True)
    calibrated_at = models.DateTimeField(null=True, blank=True)
    state = models.JSONField(default=dict, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="a scan holds the model until then")
    last_scan_at = models.DateTimeField(null=True, blank=True)
    last_scan = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"detectors of {self.model.slug} (scanned to #{self.watermark_id})"


class DetectorFinding(models.Model):
    """One detector's finding about one client in one scanned range; unique, so a rescan adds nothing."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="findings")
    detector = models.CharField(max_length=64)
    client_id = models.CharField(max_length=200)
    score = models.FloatField()
    severity = models.CharField(max_length=16)
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
