"""The Celery app: configuration comes from Django settings (CELERY_* names)."""
import functools
import os
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import beat_init, before_task_publish, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")

app = Celery("monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# kombu's filesystem transport (the local default) expects these folders to exist.
BROKER_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


@functools.cache
def make_broker_folders() -> None:
    """The filesystem broker's folders, made once per process by the first one to publish or consume: settings
    only names them (importing settings writes nothing), and a Redis broker has none."""
    options = app.conf.broker_transport_options or {}
    for key in BROKER_FOLDER_OPTIONS:
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _worker_broker_folders(sender: object, **kwargs: object) -> None:
    make_broker_folders()


@before_task_publish.connect
def _publisher_broker_folders(sender: object, **kwargs: object) -> None:
    # Web requests, commands and beat publish; kombu declares the queue inside publish(), after this signal.
    make_broker_folders()


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
