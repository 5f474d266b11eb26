from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"
    verbose_name = "Membership-inference monitor"

    def ready(self) -> None:
        # Bind @shared_task to our configured Celery app in every process (web, worker, commands).
        from monitor.celery import app  # noqa: F401
