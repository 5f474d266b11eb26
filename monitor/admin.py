"""Django admin for configuration. Secrets and member data are never shown: tokens appear by prefix,
datasets by size and hash, artifacts by hash."""
from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect

from monitor.access.admin_site import EvidenceAdmin
from monitor.alerts import integrations
from monitor.alerts.channels import ChannelError, check_target
from monitor.models import (
    Alert,
    AlertEvent,
    ApiToken,
    Delivery,
    ModelArtifact,
    NotificationChannel,
    QueryLog,
    ReferenceDataset,
    RegisteredModel,
    TrailEntry,
    WorkerHeartbeat,
)


class ArtifactInline(admin.TabularInline):
    model = ModelArtifact
    fields = ("version", "format", "sha256", "size", "filename", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


class DatasetInline(admin.TabularInline):
    model = ReferenceDataset
    fields = ("kind", "n_rows", "sha256", "filename", "uploaded_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "team", "source", "output_policy", "retention_days", "version", "created_at")
    search_fields = ("slug", "name", "team")
    readonly_fields = ("source", "feature_names", "features", "class_labels", "label_column", "version", "created_by",
                       "created_at")
    fields = ("slug", "name", "team", "endpoint_url", "output_policy", "retention_days", "auto_restrict_action",
              "auto_restrict_severity", "auto_restrict_hours", "false_alarm_budget", "client_queries_per_minute",
              "client_queries_per_day", "undetected_records_target") + readonly_fields
    inlines = [ArtifactInline, DatasetInline]

    def add_view(self, request, form_url: str = "", extra_context=None):
        # Registration validates an artifact and up to three CSVs together, so "Add" opens that form.
        return redirect("model-register")

    # Changed settings reach the trail from the model's save (monitor/trail/changes.py), as from the API or a shell.

    def has_delete_permission(self, request, obj=None) -> bool:
        # A model's delete cascades to its alerts, findings, audit runs and query log: the evidence refused below.
        # Retention (retention_days) is how its data goes; a delete elsewhere is recorded with what went with it.
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "kind", "model", "user", "created_at", "last_used_at", "revoked_at", "queries_per_minute")
    list_filter = ("kind",)
    readonly_fields = ("prefix", "kind", "model", "user", "created_at", "last_used_at")
    fields = readonly_fields + ("revoked_at", "queries_per_minute")

    def has_add_permission(self, request) -> bool:
        return False  # tokens are printed once by `manage.py issue_token`


@admin.register(QueryLog)
class QueryLogAdmin(EvidenceAdmin):
    """What the detectors read: retention (retention_days) drops it, nobody else."""

    list_display = ("id", "model", "client_id", "ts", "label", "confidence", "request_id")
    list_filter = ("model",)
    search_fields = ("client_id", "request_id")
    exclude = ("features", "outputs")
    show_full_result_count = False


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    fields = ("at", "kind", "actor_name", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Alert)
class AlertAdmin(EvidenceAdmin):
    """Read-only here: lifecycle changes go through the alert pages and API, which log who did what."""

    list_display = ("id", "model", "kind", "client_id", "severity", "status", "last_seen", "occurrences")
    list_filter = ("status", "severity", "source")
    search_fields = ("client_id", "fingerprint", "title")
    inlines = [AlertEventInline]


class ChannelForm(forms.ModelForm):
    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "target", "min_severity", "all_models", "selected_models", "enabled",
                  "rate_limit_per_hour", "digest")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A secret target is never sent back to the browser: the field starts empty, and left empty keeps it.
        if self.keeps_secret_target:
            self.initial["target"] = ""
            self.fields["target"].required = False
            self.fields["target"].help_text = (f"now {self.instance.masked_target()} (kept secret); leave empty to keep "
                                               "it, or enter a new one")

    @property
    def keeps_secret_target(self) -> bool:
        return self.instance.pk is not None and self.instance.kind in NotificationChannel.SECRET_TARGETS

    def clean(self) -> dict:
        data = super().clean()
        if self.keeps_secret_target and not (data.get("target") or "").strip():
            if data.get("kind") == self.instance.kind:
                data["target"] = self.instance.target
                return data
            self.add_error("target", "a new kind needs its target")
            return data
        try:
            data["target"] = check_target(data.get("kind", ""), data.get("target", ""))
        except ChannelError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "min_severity", "all_models", "enabled", "last_error_at", "disabled_reason")
    list_filter = ("kind", "enabled")
    readonly_fields = ("last_error", "last_error_at", "disabled_reason")

    def save_model(self, request, obj, form, change) -> None:
        """A webhook channel saved here without a signing secret gets one, shown this once."""
        new_secret = None
        if obj.kind == NotificationChannel.WEBHOOK and not obj.secret:
            new_secret = integrations.new_webhook_secret()
            obj.set_signing_secret(new_secret)
        super().save_model(request, obj, form, change)
        if new_secret:
            messages.warning(request, f"The webhook's signing secret, shown this once: {new_secret}")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "channel", "alert", "status", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("status", "event")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


admin.site.register(WorkerHeartbeat)


@admin.register(TrailEntry)
class TrailEntryAdmin(EvidenceAdmin):
    """Read-only: the security trail has no edit or delete path."""

    list_display = ("seq", "at", "actor_name", "ip", "action", "object_type", "object_id")
    list_filter = ("action",)
    search_fields = ("actor_name", "object_id", "action")
