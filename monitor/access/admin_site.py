"""The Django admin, open to the admin role only (staff status alone is not enough)."""
from django.contrib.admin import AdminSite
from django.http import HttpRequest

from monitor.access.roles import ADMIN, has_role


class MonitorAdminSite(AdminSite):
    site_header = "MI Monitor administration"
    site_title = "MI Monitor admin"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and has_role(request.user, (ADMIN,))
