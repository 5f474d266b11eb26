"""The Celery app: configuration comes from Django settings (CELERY_* names)."""
import os

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")

app = Celery("monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def _first_heartbeat(sender: object, **kwargs: object) -> None:
    # Beat's first interval tick comes a minute after start; the overview should not cry wolf until then.
    app.send_task("monitor.tasks.record_heartbeat")
