"""The hash-chained audit log. Audit policies and runs arrive with the audit engine."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class AuditChainHead(models.Model):
    """One row, locked while appending, so concurrent writers extend the chain one at a time."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS)


class AuditLogEntry(models.Model):
    """Append-only record of a security-relevant action. `hash` = SHA-256(prev_hash + canonical JSON)."""

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit log entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_type}:{self.object_id}"

    def payload(self) -> dict:
        """What the hash covers (everything but the hash itself and the nullable actor link)."""
        return {
            "seq": self.seq, "at": self.at.isoformat(), "actor": self.actor_name, "ip": self.ip, "action": self.action,
            "object_type": self.object_type, "object_id": self.object_id, "before": self.before, "after": self.after,
        }

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + canonical_json(self.payload())).encode()).hexdigest()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("audit log entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("audit log entries are append-only")

    @classmethod
    def record(cls, *, action: str, actor: Any = None, actor_name: str | None = None, ip: str | None = None,
               obj: Any = None, object_type: str = "", object_id: str = "",
               before: Any = None, after: Any = None) -> AuditLogEntry:
        """Append one entry to the chain (inside the caller's transaction when there is one)."""
        if obj is not None:
            object_type = object_type or obj._meta.label_lower
            object_id = object_id or str(obj.pk)
        name = actor_name or (actor.get_username() if actor is not None and actor.is_authenticated else "system")
        with transaction.atomic():
            head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
            entry = cls(
                seq=head.seq + 1, at=timezone.now(), actor=actor if getattr(actor, "pk", None) else None,
                actor_name=name[:150], ip=ip, action=action, object_type=object_type[:64], object_id=str(object_id)[:64],
                before=json.loads(canonical_json(before)) if before is not None else None,
                after=json.loads(canonical_json(after)) if after is not None else None,
                prev_hash=head.hash,
            )
            entry.hash = entry.compute_hash()
            entry.save()
            AuditChainHead.objects.filter(pk=1).update(seq=entry.seq, hash=entry.hash)
        return entry


def verify_chain(entries: Any = None) -> tuple[bool, str]:
    """Walk the chain; (False, reason naming the first broken entry) or (True, summary)."""
    previous, expected_seq, count = GENESIS, 1, 0
    for entry in (entries if entries is not None else AuditLogEntry.objects.order_by("seq").iterator()):
        if entry.seq != expected_seq:
            return False, f"entry #{expected_seq} is missing (next is #{entry.seq})"
        if entry.prev_hash != previous:
            return False, f"entry #{entry.seq}: prev_hash does not match the hash of entry #{entry.seq - 1}"
        if entry.compute_hash() != entry.hash:
            return False, f"entry #{entry.seq}: its content does not match its hash (edited after it was written)"
        previous, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return True, f"{count} entries, chain intact"


ATTACKS = ["loss", "confidence", "modified_entropy", "lira_offline", "lira_online", "rmia", "label_only"]
TIER1 = ["loss", "confidence", "modified_entropy", "rmia", "lira_offline"]
ATTACK_LABELS = {
    "loss": "Loss threshold (Yeom et al. 2018)", "confidence": "Confidence threshold",
    "modified_entropy": "Modified entropy (Song & Mittal 2021)", "lira_offline": "LiRA offline (Carlini et al. 2022)",
    "lira_online": "LiRA online (Carlini et al. 2022)", "rmia": "RMIA (Zarifzadeh et al. 2024)",
    "label_only": "Label-only (Choquette-Choo et al. 2021)",
}
STAND_INS = ["random_forest", "gradient_boosting", "logistic_regression", "mlp"]


def default_attacks() -> list[str]:
    return list(TIER1)


class AuditPolicy(models.Model):
    """How and how often a model is audited, and the leakage it may show before an alert opens."""

    model = models.OneToOneField("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="audit_policy")
    enabled = models.BooleanField(default=True)
    cadence_hours = models.PositiveIntegerField(default=24, help_text="a scheduled audit every this many hours")
    attacks = models.JSONField(default=default_attacks, help_text=f"any of {', '.join(ATTACKS)}")
    n_reference = models.PositiveSmallIntegerField(default=4, help_text="reference models (LiRA/RMIA), 1-64")
    stand_in = models.CharField(max_length=32, default="random_forest", choices=[(s, s) for s in STAND_INS],
                                help_text="the estimator reference models are trained as, for ONNX and endpoint models")
    max_eval_records = models.PositiveIntegerField(default=2000, help_text="members and as many non-members evaluated")
    what_if = models.BooleanField(default=True, help_text="also attack each output policy (full/round/label/noise)")
    seed = models.PositiveIntegerField(default=0)
    max_tpr_at_1pct_fpr = models.FloatField(default=0.02, help_text="limit on the headline TPR at 1 % FPR (fraction)")
    max_epsilon_lower = models.FloatField(default=1.0, help_text="limit on the empirical ε lower bound")
    regression_factor = models.FloatField(default=2.0, help_text="alert when TPR@1%FPR grows by this factor over the last run")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "audit policies"

    def __str__(self) -> str:
        return f"audit policy for {self.model.slug}"

    def config(self) -> dict:
        return {
            "attacks": list(self.attacks), "n_reference": self.n_reference, "stand_in": self.stand_in,
            "max_eval_records": self.max_eval_records, "what_if": self.what_if, "seed": self.seed,
            "limits": {"tpr_at_1pct_fpr": self.max_tpr_at_1pct_fpr, "epsilon_lower": self.max_epsilon_lower,
                       "regression_factor": self.regression_factor},
        }


class AuditRun(models.Model):
    """One audit of one model version; claimed by conditional UPDATE, heartbeat while it runs."""

    STATUSES = [("queued", "queued"), ("running", "running"), ("done", "done"), ("failed", "failed")]

    model = models.ForeignKey("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="audit_runs")
    status = models.CharField(max_length=8, choices=STATUSES, default="queued")
    trigger = models.CharField(max_length=16, default="manual", choices=[("manual", "manual"), ("schedule", "schedule")])
    # Scheduled runs carry their slot: a duplicated beat tick cannot create a second run for it.
    slot = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model_version = models.PositiveIntegerField(default=1)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    data_sha256 = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    environment = models.JSONField(default=dict, blank=True, help_text="library versions, platform")
    result = models.JSONField(null=True, blank=True)
    policy_result = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["model", "-created_at"], name="auditrun_model_created"),
                   models.Index(fields=["status"], name="auditrun_status")]
        constraints = [models.UniqueConstraint(fields=["model", "slot"], condition=models.Q(slot__isnull=False),
                                               name="auditrun_one_per_slot")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"audit {self.pk} of {self.model.slug} ({self.status})"

    @property
    def headline(self) -> dict | None:
        return (self.result or {}).get("headline")


class ReferenceCache(models.Model):
    """Reference-model outputs on the audit's records, reused across audits of one model version.

    Keyed by everything that determines them (version, data hashes, stand-in, seed, count); the arrays
    derive from member data, so they are encrypted like it.
    """

    model = models.ForeignKey("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "key"], name="referencecache_model_key")]
