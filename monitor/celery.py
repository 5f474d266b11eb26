"""The Celery app: configuration comes from Django settings (CELERY_* names)."""
import os
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")

app = Celery("monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class FolderMakingScheduler(PersistentScheduler):
    """Celery's file-backed beat schedule (CELERY_BEAT_SCHEDULER), making the file's folder (data/ by default)
    when beat opens it rather than settings at import."""

    def setup_schedule(self) -> None:
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()


@beat_init.connect
def _first_heartbeat(sender: object, **kwargs: object) -> None:
    # Beat's first interval tick comes a minute after start; the overview should not cry wolf until then.
    app.send_task("monitor.tasks.record_heartbeat")
