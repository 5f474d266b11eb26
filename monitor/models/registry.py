"""Registered models, their artifacts and their (encrypted) reference data."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from monitor.models.reference_arrays import ReferenceArrays, decrypt_arrays
from monitor.platform.feature_schema import MAX_CATEGORY_LENGTH, FeatureSchema
from monitor.platform.output_policy import OutputPolicy

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
    "use 1-64 lowercase letters, digits and inner hyphens",
)


def validate_output_policy(value: str) -> None:
    try:
        OutputPolicy.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def validate_restriction_action(value: str) -> None:
    """An automatic restriction: "" (off), label_only, round:K, throttle or block."""
    if value in ("", "label_only", "throttle", "block"):
        return
    if value.startswith("round:"):
        validate_output_policy(value)
        return
    raise ValidationError(f"{value!r:.40}: expected label_only, round:K, throttle or block (or empty: off)")


MAX_CLIENT_QUERIES = 100_000_000


def default_retention_days() -> int:
    return settings.QUERY_RETENTION_DAYS


MAX_RETENTION_DAYS = 3650


class RegisteredModel(models.Model):
    SKOPS, ONNX, ENDPOINT = "skops", "onnx", "endpoint"
    XGBOOST_JSON, XGBOOST_UBJ, LIGHTGBM_TEXT = "xgboost_json", "xgboost_ubj", "lightgbm_text"
    SOURCES = [(SKOPS, "scikit-learn (skops artifact)"), (ONNX, "ONNX artifact"), (ENDPOINT, "remote HTTP endpoint"),
               (XGBOOST_JSON, "XGBoost (JSON model)"), (XGBOOST_UBJ, "XGBoost (UBJSON model)"),
               (LIGHTGBM_TEXT, "LightGBM (text model)")]

    slug = models.CharField(max_length=64, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    team = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES)
    endpoint_url = models.URLField(blank=True, max_length=500)
    feature_names = models.JSONField(default=list)
    # Each feature's name, kind, training categories and missing values (monitor.platform.feature_schema); empty for
    # a model registered before schemas: its features are the numeric feature_names.
    features = models.JSONField(default=list, blank=True)
    class_labels = models.JSONField(default=list)
    label_column = models.CharField(max_length=200)
    output_policy = models.CharField(max_length=40, default="full", validators=[validate_output_policy])
    # Bumped when the artifact changes: audits cache reference models per version.
    version = models.PositiveIntegerField(default=1)
    retention_days = models.PositiveIntegerField(
        default=default_retention_days, validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="raw queries older than this many days are dropped (rollups, findings, alerts and audits stay)")
    # Restrict a client at the gateway by itself when a detector alert about it reaches a severity (off: "").
    auto_restrict_action = models.CharField(
        max_length=32, blank=True, default="", validators=[validate_restriction_action],
        help_text="label_only, round:K, throttle or block; empty: off")
    auto_restrict_severity = models.CharField(
        max_length=16, default="critical", choices=[("warning", "warning"), ("critical", "critical")],
        help_text="a detector alert at or above this severity restricts its client")
    auto_restrict_hours = models.PositiveIntegerField(
        default=24, validators=[MinValueValidator(1), MaxValueValidator(720)], help_text="for this many hours")
    false_alarm_budget = models.FloatField(
        default=1e-3, validators=[MinValueValidator(1e-9), MaxValueValidator(0.1)],
        help_text="false incidents allowed per benign client-day, for all detectors together (split evenly "
                  "between them); a change recalibrates the detectors on the same window")
    # The per-client throttle the predict gateway applies to every client of this model (0: none), and the records an
    # undetected attacker may test per account-day that the security team accepts (sizes the recommended throttle).
    client_queries_per_minute = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(MAX_CLIENT_QUERIES)],
        help_text="queries one client may send this model a minute at the predict gateway (0: no limit)")
    client_queries_per_day = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(MAX_CLIENT_QUERIES)],
        help_text="queries one client may send this model a UTC day at the predict gateway (0: no limit)")
    undetected_records_target = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(MAX_CLIENT_QUERIES)],
        help_text="records an undetected attacker may test per account-day before a throttle is recommended")
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

    @property
    def schema(self) -> FeatureSchema:
        cached = getattr(self, "_schema", None)
        if cached is None or cached[0] != self.features:
            schema = (FeatureSchema.from_list(self.features) if self.features
                      else FeatureSchema.numeric(self.feature_names))
            cached = (self.features, schema)
            self._schema = cached
        return cached[1]

    def unseen_categories(self, codes: list[int] | None = None) -> dict[int, str]:
        """Negative codes' ids -> the category values they stand for (all of them, or those of `codes`)."""
        rows = self.unseen.all() if codes is None else self.unseen.filter(id__in=[abs(c) for c in codes])
        return dict(rows.values_list("id", "value"))

    def current_artifact(self) -> ModelArtifact | None:
        return self.artifacts.filter(version=self.version).first()


class UnseenCategory(models.Model):
    """A category a model's queries carried that its training never saw: logged as it is (its code in the log is
    -id), and counted on the model page."""

    model = models.ForeignKey(RegisteredModel, related_name="unseen", on_delete=models.CASCADE)
    feature = models.CharField(max_length=200)
    value = models.CharField(max_length=MAX_CATEGORY_LENGTH)
    queries = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "feature", "value"], name="unseen_category_once")]


class ModelArtifact(models.Model):
    """The bytes of one artifact version, kept in the database so every worker sees the same file."""

    model = models.ForeignKey(RegisteredModel, related_name="artifacts", on_delete=models.CASCADE)
    version = models.PositiveIntegerField()
    FORMATS = [("skops", "skops"), ("onnx", "ONNX"), ("xgboost_json", "XGBoost JSON"), ("xgboost_ubj", "XGBoost UBJSON"),
               ("lightgbm_text", "LightGBM text")]
    format = models.CharField(max_length=16, choices=FORMATS)
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

    def load(self) -> ReferenceArrays:
        return decrypt_arrays(bytes(self.ciphertext))
