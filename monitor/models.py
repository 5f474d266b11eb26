"""Registered models, their artifacts and reference data, API tokens, the query log and its rollup."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from monitor.output_policy import OutputPolicy

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
    "use 1-64 lowercase letters, digits and inner hyphens",
)


def validate_output_policy(value: str) -> None:
    from django.core.exceptions import ValidationError

    try:
        OutputPolicy.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


class RegisteredModel(models.Model):
    SKOPS, ONNX, ENDPOINT = "skops", "onnx", "endpoint"
    SOURCES = [(SKOPS, "scikit-learn (skops artifact)"), (ONNX, "ONNX artifact"), (ENDPOINT, "remote HTTP endpoint")]

    slug = models.CharField(max_length=64, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    team = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES)
    endpoint_url = models.URLField(blank=True, max_length=500)
    feature_names = models.JSONField(default=list)
    class_labels = models.JSONField(default=list)
    label_column = models.CharField(max_length=200)
    output_policy = models.CharField(max_length=40, default="full", validators=[validate_output_policy])
    # Bumped when the artifact changes: audits cache reference models per version.
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def policy(self) -> OutputPolicy:
        return OutputPolicy.parse(self.output_policy)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def current_artifact(self) -> ModelArtifact | None:
        return self.artifacts.filter(version=self.version).first()

    def queries_logged(self) -> int:
        return self.rollups.aggregate(n=models.Sum("count"))["n"] or 0

    def client_count(self) -> int:
        return self.rollups.values("client_id").distinct().count()


class ModelArtifact(models.Model):
    """The bytes of one artifact version, kept in the database so every worker sees the same file."""

    model = models.ForeignKey(RegisteredModel, related_name="artifacts", on_delete=models.CASCADE)
    version = models.PositiveIntegerField()
    format = models.CharField(max_length=16, choices=[("skops", "skops"), ("onnx", "ONNX")])
    data = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    filename = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="artifact_model_version")]

    def __str__(self) -> str:
        return f"{self.model.slug} v{self.version} ({self.format}, {self.sha256[:12]})"


class ReferenceDataset(models.Model):
    """Members, non-members or population: an encrypted npz (X, y, record ids), never stored in clear."""

    MEMBERS, NONMEMBERS, POPULATION = "members", "nonmembers", "population"
    KINDS = [(MEMBERS, "members (training sample)"), (NONMEMBERS, "non-members (held out)"), (POPULATION, "population")]

    model = models.ForeignKey(RegisteredModel, related_name="datasets", on_delete=models.CASCADE)
    kind = models.CharField(max_length=16, choices=KINDS)
    ciphertext = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the uploaded CSV bytes")
    n_rows = models.PositiveIntegerField()
    filename = models.CharField(max_length=255, blank=True)
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "kind"], name="dataset_model_kind")]

    def __str__(self) -> str:
        return f"{self.model.slug} {self.kind} ({self.n_rows} rows)"

    def load(self):  # -> monitor.referencedata.ReferenceArrays
        from monitor.referencedata import decrypt_arrays

        return decrypt_arrays(bytes(self.ciphertext))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """Bearer tokens, stored as SHA-256 (they are 256-bit random, so a fast hash is enough)."""

    INGEST, USER = "ingest", "user"
    KINDS = [(INGEST, "model ingestion"), (USER, "personal API")]

    kind = models.CharField(max_length=8, choices=KINDS)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="first characters, to tell tokens apart")
    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="token_has_one_owner",
                condition=(models.Q(kind="ingest", model__isnull=False, user__isnull=True)
                           | models.Q(kind="user", user__isnull=False, model__isnull=True)),
            )
        ]

    def __str__(self) -> str:
        owner = self.model.slug if self.model_id else self.user.get_username()
        return f"{self.get_kind_display()} token {self.prefix}… for {owner}"

    @classmethod
    def issue(cls, *, kind: str, model: RegisteredModel | None = None, user=None) -> tuple[ApiToken, str]:
        """Create a token; the clear value is returned once and never stored."""
        clear = f"mim_{kind}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(kind=kind, model=model, user=user, token_hash=hash_token(clear), prefix=clear[:12])
        return token, clear

    @classmethod
    def authenticate(cls, clear: str) -> ApiToken | None:
        token = cls.objects.active().select_related("model", "user").filter(token_hash=hash_token(clear)).first()
        if token is None or (token.user_id and not token.user.is_active):
            return None
        now = timezone.now()
        # Write last_used at most once a minute: a token is used for every ingestion batch.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            cls.objects.filter(id=token.id).update(last_used_at=now)
        return token


class QueryLog(models.Model):
    """One prediction query: features and outputs as little-endian float32 bytes."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, related_name="queries")
    client_id = models.CharField(max_length=128)
    ts = models.DateTimeField()
    features = models.BinaryField()
    outputs = models.BinaryField()
    label = models.SmallIntegerField()
    confidence = models.FloatField()
    request_id = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["model", "ts"], name="query_model_ts"),
            models.Index(fields=["model", "client_id", "ts"], name="query_model_client_ts"),
            models.Index(fields=["model", "id"], name="query_model_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "request_id"], condition=models.Q(request_id__isnull=False), name="query_request_once"
            )
        ]


class QueryRollup(models.Model):
    """Per model, client and minute: what dashboards read instead of scanning the raw log."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, db_index=False, related_name="rollups")
    client_id = models.CharField(max_length=128)
    minute = models.DateTimeField()
    count = models.PositiveIntegerField()
    confidence_sum = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["model", "minute"], name="rollup_model_minute")]
        constraints = [
            models.UniqueConstraint(fields=["model", "client_id", "minute"], name="rollup_model_client_minute")
        ]


class WorkerHeartbeat(models.Model):
    """Written by a periodic task: proves a worker and beat are alive (shown on the overview)."""

    name = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)


class Alert(models.Model):
    """One alert per fingerprint (source + model + detector/attack + client); repeats update it.

    The alerting issue adds the lifecycle, channels and deliveries on top of this table.
    """

    SOURCES = [("audit", "audit"), ("detector", "detector")]
    SEVERITIES = [("info", "info"), ("warning", "warning"), ("critical", "critical")]
    STATUSES = [("open", "open"), ("acknowledged", "acknowledged"), ("resolved", "resolved"), ("muted", "muted")]

    fingerprint = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=SOURCES)
    kind = models.CharField(max_length=64)
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alerts")
    client_id = models.CharField(max_length=128, blank=True)
    severity = models.CharField(max_length=16, choices=SEVERITIES)
    status = models.CharField(max_length=16, choices=STATUSES, default="open")
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    occurrences = models.PositiveIntegerField(default=1)
    evidence = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["model", "status"], name="alert_model_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"], condition=~models.Q(status="resolved"), name="alert_one_unresolved_per_fingerprint"
            )
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.kind} on {self.model_id} ({self.status})"
