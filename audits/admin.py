from django.contrib import admin

from audits.models import AuditLogEntry


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log has no edit or delete path."""

    list_display = ("seq", "at", "actor_name", "ip", "action", "object_type", "object_id")
    list_filter = ("action",)
    search_fields = ("actor_name", "object_id", "action")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
