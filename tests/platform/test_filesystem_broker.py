"""The local default broker (filesystem://) delivers every message once while workers poll, and keeps every
queue's binding when processes bind at once (kombu's own transport lost 1-3 % of messages published while a
consumer polled: it read files still being written)."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

from kombu import Connection, Exchange, Queue

from monitor.platform.filesystem_broker import Transport

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 1500
TRANSPORT = "monitor.platform.filesystem_broker:Transport"
PROCESSES = multiprocessing.get_context("fork")


def options(folder: Path) -> dict:
    return {"data_folder_in": str(folder / "out"), "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control")}


def publish(folder: Path, queue: Queue, count: int) -> None:
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder)) as connection:
        producer = connection.Producer()
        for number in range(count):
            producer.publish({"number": number, "padding": "x" * 4000}, exchange=queue.exchange,
                             routing_key=queue.routing_key, declare=[queue])


def consume(folder: Path, queue: Queue, seconds: float, results) -> None:
    numbers, errors = [], []
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder)) as connection:
        bound = queue(connection.channel())
        bound.declare()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            published = (folder / "done").exists()  # before the poll: an empty poll after it means none left
            try:
                message = bound.get(no_ack=True)
            except Exception as exc:  # noqa: BLE001 (kombu's own transport raised JSONDecodeError here)
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if message is None:
                if published:
                    break
                continue
            numbers.append(message.payload["number"])
    results.put((numbers, errors))


def test_every_message_published_while_two_workers_poll_is_delivered_once(tmp_path):
    queue = Queue("scan", Exchange("scan"), routing_key="scan")
    results = PROCESSES.Queue()
    consumers = [PROCESSES.Process(target=consume, args=(tmp_path, queue, 60, results)) for _ in range(2)]
    for consumer in consumers:
        consumer.start()
    time.sleep(0.5)  # both polling before the first message
    publish(tmp_path, queue, MESSAGES)
    (tmp_path / "done").touch()
    outcomes = [results.get(timeout=90) for _ in consumers]
    for consumer in consumers:
        consumer.join(30)

    numbers = [number for got, _ in outcomes for number in got]
    errors = [error for _, got in outcomes for error in got]
    assert errors == []
    assert sorted(numbers) == list(range(MESSAGES))  # none lost, none twice
    assert all(got for got, _ in outcomes), "both workers took messages"
    assert os.listdir(tmp_path / "out") == [] and os.listdir(tmp_path / "processed") == []


def bind_all(folder: Path, queue_name: str, exchanges: int, start) -> None:
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder)) as connection:
        channel = connection.channel()
        start.wait()
        for number in range(exchanges):
            Queue(queue_name, Exchange(f"exchange-{number}", type="fanout"))(channel).declare()


def test_two_processes_binding_queues_to_new_exchanges_at_once_keep_both_bindings(tmp_path):
    start = PROCESSES.Event()
    binders = [PROCESSES.Process(target=bind_all, args=(tmp_path, name, 200, start)) for name in ("first", "second")]
    for binder in binders:
        binder.start()
    start.set()
    for binder in binders:
        binder.join(60)
        assert binder.exitcode == 0

    lost = []
    for number in range(200):
        table = json.loads((tmp_path / "control" / f"exchange-{number}.exchange").read_text())
        queues = sorted(entry[2] for entry in table)
        if queues != ["first", "second"]:
            lost.append((number, queues))
    assert lost == []
    assert [name for name in os.listdir(tmp_path / "control") if not name.endswith(".exchange")] == []


def test_the_local_default_broker_uses_this_transport():
    """Settings pick it whenever the broker URL is filesystem:// (the README's `make run` and SQLite tests)."""
    code = ("import django; django.setup(); from monitor.celery import app; "
            "print(app.connection_for_write().get_transport_cls().__module__)")
    env = {key: value for key, value in os.environ.items() if key not in ("CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="monitor.settings")
    printed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120, check=True).stdout.split()
    assert printed[-1] == Transport.__module__


def test_a_process_that_only_reads_makes_the_folders_and_takes_its_messages(tmp_path):
    """E.g. `celery inspect` reading its replies: the first channel a process opens makes the broker's folders."""
    queue = Queue("replies", Exchange("replies"), routing_key="replies")
    publish(tmp_path, queue, 3)
    (tmp_path / "processed").rmdir()  # the publisher made it; the reader must make it again for itself
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(tmp_path)) as connection:
        bound = queue(connection.channel())
        taken = [bound.get(no_ack=True) for _ in range(4)]
    assert sorted(message.payload["number"] for message in taken[:3]) == [0, 1, 2] and taken[3] is None
    assert all(Path(folder).is_dir() for folder in options(tmp_path).values())
