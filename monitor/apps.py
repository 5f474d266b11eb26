from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class MonitorConfig(AppConfig):
    name = "monitor"
    verbose_name = "Membership-inference monitor"
    default = True

    def ready(self) -> None:
        # Bind @shared_task to our configured Celery app in every process (web, worker, commands).
        from monitor.celery import app  # noqa: F401
        from monitor.trail import changes as trail_changes
        from monitor.trail import hooks as audit_hooks  # noqa: F401  (connects the login signals)

        trail_changes.connect()  # every change to tokens, channels, users, groups, lockouts and models, from any path
        from django.db.models.signals import pre_delete

        from monitor.ingestion.store import wait_for_batches_in_flight
        from monitor.models import RegisteredModel

        # The query log has no foreign key on PostgreSQL: a model's delete waits for its batches in flight.
        pre_delete.connect(wait_for_batches_in_flight, sender=RegisteredModel, dispatch_uid="ingestion-model-delete")


class MonitorAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "monitor.access.admin_site.MonitorAdminSite"
