"""The audit engine's tables: each model's audit policy, its audit runs, and the reference-model cache."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from audits.attacks import metrics
from audits.attacks.audit import DEFAULT_EVAL_RECORDS
from audits.attacks.catalogue import TIER_1_NAMES, attack_names, plan_problems
from audits.attacks.stand_ins import STAND_IN_NAMES
from audits.attacks.verdict import VerdictState

# The headline's FPR (metrics.HEADLINE_FPR) as the key it is stored under in a run's result.
HEADLINE_FPR = metrics.fpr_key(metrics.HEADLINE_FPR)
# A run whose worker vanished may be claimed again by its redelivered message, this many claims in all.
MAX_ATTEMPTS = 2


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class Trigger(models.TextChoices):
    MANUAL = "manual", "manual"
    SCHEDULE = "schedule", "schedule"

MIN_EVAL_RECORDS = 100

# The attack vocabulary is the catalogue's (audits.attacks.catalogue): one list for the policy, admin and pages.
ATTACKS: tuple[str, ...] = attack_names()
STAND_INS = list(STAND_IN_NAMES)


def default_attacks() -> list[str]:
    return list(TIER_1_NAMES)


class AuditPolicyManager(models.Manager["AuditPolicy"]):
    def for_model(self, model: Any) -> AuditPolicy:
        """The model's policy, or the default one unsaved: reading a policy (a page, a scheduled tick) never
        inserts a row; saving one is an admin's change."""
        return self.filter(model=model).first() or self.model(model=model)

    def ensure(self, model: Any) -> AuditPolicy:
        """The model's stored policy, created with the defaults if it has none (for writers)."""
        return self.get_or_create(model=model)[0]


class AuditPolicy(models.Model):
    """How and how often a model is audited, and the leakage it may show before an alert opens."""

    model = models.OneToOneField("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="audit_policy")
    enabled = models.BooleanField(default=True)
    cadence_hours = models.PositiveIntegerField(default=24, help_text="a scheduled audit every this many hours")
    attacks = models.JSONField(default=default_attacks, help_text="attack names of the catalogue (audits.attacks.catalogue; the policy form lists them)")
    n_reference = models.PositiveSmallIntegerField(default=4, help_text="reference models (LiRA/RMIA), 1-64")
    stand_in = models.CharField(max_length=32, default="random_forest", choices=[(s, s) for s in STAND_INS],
                                help_text="the estimator reference models are trained as, for ONNX and endpoint models")
    max_eval_records = models.PositiveIntegerField(
        default=DEFAULT_EVAL_RECORDS, help_text="at most this many members and as many non-members evaluated (all the "
                                                "data allows up to it: the 0.1 % FPR figure needs 10,000 non-members)")
    what_if = models.BooleanField(default=True, help_text="also attack each output policy (full/round/label/noise)")
    seed = models.PositiveIntegerField(default=0)
    max_tpr_at_1pct_fpr = models.FloatField(default=0.02, help_text="limit on the headline TPR at 1 % FPR (fraction)")
    max_epsilon_lower = models.FloatField(default=1.0, help_text="limit on the empirical ε lower bound")
    regression_factor = models.FloatField(default=2.0, help_text="alert when TPR@1%FPR grows by this factor over the last run")
    remediation = models.BooleanField(default=False, help_text="scheduled audits also train and attack hardened "
                                                               "candidates of the estimator (scikit-learn models only)")
    max_accuracy_cost = models.FloatField(default=0.01, help_text="the recommended hardened candidate loses at most "
                                                                   "this much accuracy (fraction: 0.01 = 1 point)")
    gate_alpha = models.FloatField(default=0.05, help_text="the privacy gate fails a candidate that leaks more than "
                                                           "production at this significance level (0 < α < 0.5)")
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditPolicyManager()

    class Meta:
        verbose_name_plural = "audit policies"

    def __str__(self) -> str:
        return f"audit policy for {self.model.slug}"

    def clean(self) -> None:
        """Refuse a policy that cannot run (checked on every save through a form, the admin or the API), so a
        policy never fails every scheduled audit."""
        problems = plan_problems(self.attacks, n_reference=self.n_reference)
        if self.max_eval_records is not None and self.max_eval_records < MIN_EVAL_RECORDS:
            problems["max_eval_records"] = f"at least {MIN_EVAL_RECORDS} records per side"
        if self.max_accuracy_cost is not None and not 0 <= self.max_accuracy_cost <= 1:
            problems["max_accuracy_cost"] = "a fraction between 0 and 1 (0.01 = 1 point of accuracy)"
        if self.gate_alpha is not None and not 0 < self.gate_alpha < 0.5:
            problems["gate_alpha"] = "a significance level between 0 and 0.5 (0.05 by default)"
        for field in ("max_tpr_at_1pct_fpr", "max_epsilon_lower", "regression_factor"):
            value = getattr(self, field)
            if value is not None and not 0 < value < math.inf:  # infinity cannot be stored in the trail's JSON
                problems[field] = "must be a finite number greater than 0"
        if self.max_tpr_at_1pct_fpr is not None and self.max_tpr_at_1pct_fpr > 1:
            problems["max_tpr_at_1pct_fpr"] = "a fraction between 0 and 1 (0.02 = 2 %)"
        if problems:
            raise ValidationError(problems)

    def config(self) -> dict:
        return {
            "attacks": list(self.attacks), "n_reference": self.n_reference, "stand_in": self.stand_in,
            "max_eval_records": self.max_eval_records, "what_if": self.what_if, "seed": self.seed,
            "remediation": self.remediation, "max_accuracy_cost": self.max_accuracy_cost, "gate_alpha": self.gate_alpha,
            "limits": {"tpr_at_1pct_fpr": self.max_tpr_at_1pct_fpr, "epsilon_lower": self.max_epsilon_lower,
                       "regression_factor": self.regression_factor},
        }


class AuditRunQuerySet(models.QuerySet["AuditRun"]):
    def finished(self) -> AuditRunQuerySet:
        return self.filter(status=RunStatus.DONE)

    def latest_finished(self) -> AuditRun | None:
        return self.finished().order_by("-finished_at").first()

    def claim(self, run_id: int, *, now: datetime | None = None) -> bool:
        """queued → running for exactly one worker (a conditional UPDATE). A run whose worker vanished (no
        heartbeat for AUDIT_STALE_SECONDS) may be claimed again by the redelivered message, up to MAX_ATTEMPTS."""
        now = now or timezone.now()
        stale = now - timedelta(seconds=settings.AUDIT_STALE_SECONDS)
        return bool(self.filter(
            Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale), id=run_id,
            attempts__lt=MAX_ATTEMPTS,
        ).update(status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, progress=0,
                 step="starting", error=""))


VERDICT_LABELS = {VerdictState.PASSED: "within policy", VerdictState.BREACHED: "policy breached",
                  VerdictState.INCONCLUSIVE: "inconclusive — weak audit"}


def verdict_of(policy_result: dict | None) -> str | None:
    if not policy_result:
        return None
    return policy_result.get("verdict") or (VerdictState.PASSED if policy_result.get("passed") else VerdictState.BREACHED)


def headline_rate(headline: dict | None, fpr: str | float = HEADLINE_FPR) -> dict:
    """`{"value", "low", "high", "attack", "reliable"}` of a stored headline at `fpr` ({} when absent); for
    readers that load only the headline column (`values("result__headline")`)."""
    key = fpr if isinstance(fpr, str) else f"{fpr:g}"
    return ((headline or {}).get("tpr_at_fpr") or {}).get(key) or {}


class AuditRun(models.Model):
    """One audit of one model version; claimed by conditional UPDATE, heartbeat while it runs.

    `result` is the attack core's `AuditResult.to_dict()`; read it through the accessors below, never by hand,
    so every page, detector and bundle agrees on what the headline and the leading attack are."""

    model = models.ForeignKey("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="audit_runs")
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=16, default=Trigger.MANUAL, choices=Trigger.choices)
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
    remediation = models.BooleanField(default=False, help_text="also train and attack hardened candidates")

    objects = AuditRunQuerySet.as_manager()

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
        """Best attack at each FPR target, AUC and ε lower bound, each naming its attack."""
        return (self.result or {}).get("headline")

    @property
    def attack_results(self) -> list[dict]:
        return list((self.result or {}).get("attacks") or [])

    def tpr_at(self, fpr: str | float = HEADLINE_FPR) -> dict:
        """The headline's TPR at `fpr` with its interval and attack ({} before a finished run)."""
        return headline_rate(self.headline, fpr)

    def leading_attack(self) -> dict | None:
        """The one rule for "the leading attack": the attack that sets the headline TPR at 1 % FPR; where the
        headline names none (e.g. every attack reads zero there), the one with the best AUC."""
        attacks = self.attack_results
        headline = self.headline or {}
        for name in (self.tpr_at().get("attack"), headline.get("auc_attack")):
            found = next((attack for attack in attacks if attack.get("name") == name), None)
            if found is not None:
                return found
        return None

    def most_exposed_ids(self) -> list[str]:
        """Member record ids the leading attack is surest about, most exposed first (ids only, never values)."""
        leader = self.leading_attack()
        return [str(i) for i in (leader or {}).get("top_exposed") or []]

    @property
    def passed(self) -> bool | None:
        return (self.policy_result or {}).get("passed") if self.policy_result else None

    @property
    def verdict(self) -> str | None:
        """passed | breached | inconclusive (a weak audit), None before a verdict; runs judged before
        "inconclusive" existed are passed or breached by their `passed` flag."""
        return verdict_of(self.policy_result)

    @property
    def verdict_label(self) -> str:
        """"within policy", "policy breached" or "inconclusive — weak audit" ("" before a verdict)."""
        return VERDICT_LABELS.get(self.verdict or "", "")

    def summary(self, *, full: bool = False, member_ids: bool = True) -> dict:
        """The audit run shape of DESIGN.md; `full` adds ROC points, per-class slices, what-if and provenance, and
        each attack's most exposed member records: their count (`n_top_exposed`) and, with `member_ids`, their ids
        (`top_exposed`; the caller decides who may see them: monitor.access.roles.may_see_member_ids)."""
        result = self.result or {}
        attacks = []
        for attack in self.attack_results:
            item = {key: attack.get(key) for key in ("name", "auc", "advantage", "balanced_accuracy", "epsilon_lower",
                                                      "tpr_at_fpr", "n_members", "n_nonmembers")}
            if full:
                item.update({key: attack.get(key) for key in ("roc", "per_class", "seconds", "details")})
                exposed = attack.get("top_exposed") or []
                item["n_top_exposed"] = len(exposed)
                if member_ids:
                    item["top_exposed"] = exposed
            attacks.append(item)
        summary = {
            "id": self.pk, "model": self.model.slug, "status": self.status, "trigger": self.trigger,
            "progress": self.progress, "step": self.step, "error": self.error or None, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at, "headline": self.headline,
            "attacks": attacks, "policy": self.policy_result, "remediation": result.get("remediation"),
        }
        if full:
            summary.update({
                "what_if": result.get("what_if"), "recommendations": result.get("recommendations"),
                "accuracy": result.get("accuracy"), "notes": result.get("notes"), "timings": result.get("timings"),
                "model_version": self.model_version, "artifact_sha256": self.artifact_sha256,
                "data_sha256": self.data_sha256, "config": self.config, "environment": self.environment,
                "attack_config": result.get("config"),
            })
        return summary


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


class ExposureRanking(models.Model):
    """Every evaluated member's rank under one attack of one run (`audits.attacks.exposure`): record ids, ranks,
    scores and the FPR thresholds, encrypted like the member data they derive from. Read by the exposure lookup."""

    run = models.ForeignKey(AuditRun, on_delete=models.CASCADE, related_name="exposure_rankings")
    attack = models.CharField(max_length=64)
    n_members = models.PositiveIntegerField()
    ciphertext = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "attack"], name="exposureranking_run_attack")]


class HardenedArtifact(models.Model):
    """The recommended hardened candidate of a remediation run, as a skops file (encrypted: it was trained on the
    member records), with what it is: its setting, hash and the data it was trained on."""

    run = models.OneToOneField(AuditRun, on_delete=models.CASCADE, related_name="hardened_artifact")
    candidate = models.PositiveSmallIntegerField(help_text="index into the run's remediation candidates")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    provenance = models.JSONField(default=dict)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)


class CandidateStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class GateCandidate(models.Model):
    """A candidate artifact gated against its model's production artifact (audits.gate): uploaded through the API,
    the model page or `manage.py gate`, audited by a worker (or in-process), and perhaps promoted to the model's
    next artifact version. Its own members (when it trained on new data) are stored encrypted, like reference data."""

    model = models.ForeignKey("monitor.RegisteredModel", on_delete=models.CASCADE, related_name="candidates")
    artifact_data = models.BinaryField()
    artifact_format = models.CharField(max_length=16)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.PositiveBigIntegerField()
    artifact_name = models.CharField(max_length=255, blank=True)
    members_ciphertext = models.BinaryField(null=True, blank=True)
    members_sha256 = models.CharField(max_length=64, blank=True)
    members_rows = models.PositiveIntegerField(null=True, blank=True)
    production_version = models.PositiveIntegerField(help_text="the model's version the candidate was gated against")
    alpha = models.FloatField(null=True, blank=True, help_text="the significance level asked for (else the policy's)")
    status = models.CharField(max_length=8, choices=CandidateStatus.choices, default=CandidateStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    verdict = models.CharField(max_length=16, blank=True)
    exit_code = models.PositiveSmallIntegerField(null=True, blank=True)
    report = models.JSONField(null=True, blank=True, help_text="audits.gate.GateOutcome.report()")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_version = models.PositiveIntegerField(null=True, blank=True)
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    promoted_at = models.DateTimeField(null=True, blank=True)
    promotion_reason = models.TextField(blank=True, help_text="required to promote a candidate the gate failed")
    # The client's Idempotency-Key header: a retried upload answers with the candidate the first one stored.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["model", "-created_at"], name="candidate_model_created")]
        constraints = [models.UniqueConstraint(fields=["model", "idempotency_key"], condition=~Q(idempotency_key=""),
                                               name="candidate_model_idempotency_key")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"candidate {self.pk} of {self.model.slug} ({self.verdict or self.status})"
