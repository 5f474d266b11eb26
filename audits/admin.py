from django import forms
from django.contrib import admin

from audits.models import AuditPolicy, AuditRun
from monitor.access.admin_site import EvidenceAdmin
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry


class AuditPolicyForm(forms.ModelForm):
    class Meta:
        model = AuditPolicy
        fields = "__all__"

    # Attack names, reference counts and limits are checked by AuditPolicy.clean (the model's full_clean).


@admin.register(AuditPolicy)
class AuditPolicyAdmin(admin.ModelAdmin):
    """Schedule, attacks and limits per model; changes are written to the audit log."""

    form = AuditPolicyForm
    list_display = ("model", "enabled", "cadence_hours", "n_reference", "max_tpr_at_1pct_fpr", "max_epsilon_lower", "remediation",
                    "updated_at")
    list_filter = ("enabled",)

    def save_model(self, request, obj, form, change) -> None:
        before = AuditPolicy.objects.filter(pk=obj.pk).first()
        super().save_model(request, obj, form, change)
        TrailEntry.record(action="audit_policy.changed", actor=request.user, ip=client_ip(request),
                             obj=obj, before=before.config() if before else None, after=obj.config())


@admin.register(AuditRun)
class AuditRunAdmin(EvidenceAdmin):
    """Evidence: read here, never deleted (a run's result is what a bundle signs)."""

    list_display = ("id", "model", "status", "trigger", "progress", "created_at", "finished_at")
    list_filter = ("status", "trigger")
    exclude = ("result",)
