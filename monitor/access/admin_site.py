"""The Django admin, open to the admin role only (staff status alone is not enough)."""
from typing import Any

from django.contrib.admin import AdminSite, ModelAdmin
from django.http import HttpRequest

from monitor.access.roles import ADMIN, has_role


class MonitorAdminSite(AdminSite):
    site_header = "MI Monitor administration"
    site_title = "MI Monitor admin"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and has_role(request.user, (ADMIN,))


class EvidenceAdmin(ModelAdmin):
    """Evidence (alerts, audit runs, the query log, the trail) is read here, never added, edited or deleted: the
    delete views answer 403 and "delete selected" is not offered. Changes go through the domain, which records them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
