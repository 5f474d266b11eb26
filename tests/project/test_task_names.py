"""Domain code sends tasks by name (monitor.platform.broker.publish), so that it never imports a task module
back; a misspelt or renamed task would then be sent and never run. Every name sent in the source tree and every
beat entry must be a task the worker registers."""
from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

from monitor.celery import app

ROOT = Path(__file__).resolve().parents[2]
SENDERS = {"publish", "publish_on_commit", "send_task"}


def names_sent_in_source() -> dict[str, str]:
    """{task name: where} for every call of a sender whose first argument is a string literal."""
    sent: dict[str, str] = {}
    for package in ("monitor", "audits"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.args[0]
                if name in SENDERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                    sent[first.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return sent


def registered() -> set[str]:
    app.loader.import_default_modules()  # what a worker imports at start (autodiscovered task modules)
    return set(app.tasks)


def test_every_task_sent_by_name_is_registered():
    sent = names_sent_in_source()
    # the scan must find the senders it exists for, or it checks nothing
    assert {"audits.tasks.run_audit", "monitor.tasks.deliver_notifications"} <= set(sent), sent
    missing = {name: where for name, where in sent.items() if name not in registered()}
    assert not missing, f"sent by name but no such task: {missing}"


def test_every_beat_entry_names_a_registered_task():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule
    missing = {entry: spec["task"] for entry, spec in schedule.items() if spec["task"] not in registered()}
    assert not missing, f"beat entries naming no task: {missing}"
