"""Tests of The project's wiring: settings, the Celery app and its task names, deployment files, secrets kept out of logs."""
