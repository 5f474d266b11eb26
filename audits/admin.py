from django import forms
from django.contrib import admin

from audits.models import ATTACKS, AuditPolicy, AuditRun
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry


class AuditPolicyForm(forms.ModelForm):
    class Meta:
        model = AuditPolicy
        fields = "__all__"

    def clean_attacks(self) -> list:
        attacks = self.cleaned_data["attacks"]
        if not isinstance(attacks, list) or not attacks:
            raise forms.ValidationError("a non-empty list of attack names")
        unknown = [a for a in attacks if a not in ATTACKS and a != "threshold"]
        if unknown:
            raise forms.ValidationError(f"unknown attacks {unknown}; known: threshold, {', '.join(ATTACKS)}")
        return attacks

    def clean_n_reference(self) -> int:
        value = self.cleaned_data["n_reference"]
        if not 1 <= value <= 64:
            raise forms.ValidationError("between 1 and 64 reference models")
        return value


@admin.register(AuditPolicy)
class AuditPolicyAdmin(admin.ModelAdmin):
    """Schedule, attacks and limits per model; changes are written to the audit log."""

    form = AuditPolicyForm
    list_display = ("model", "enabled", "cadence_hours", "n_reference", "max_tpr_at_1pct_fpr", "max_epsilon_lower", "updated_at")
    list_filter = ("enabled",)

    def save_model(self, request, obj, form, change) -> None:
        before = AuditPolicy.objects.filter(pk=obj.pk).first()
        super().save_model(request, obj, form, change)
        TrailEntry.record(action="audit_policy.changed", actor=request.user, ip=client_ip(request),
                             obj=obj, before=before.config() if before else None, after=obj.config())


@admin.register(AuditRun)
class AuditRunAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "status", "trigger", "progress", "created_at", "finished_at")
    list_filter = ("status", "trigger")
    exclude = ("result",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
