"""Two workers racing on the outbox send each message once (claim by conditional UPDATE)."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from monitor.alerts.lifecycle import raise_signal
from monitor.alerts.outbox import deliver_due
from monitor.models import Delivery
from tests.factories import make_channel, make_model, signal

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_racing_send_each_message_once(slack_server):
    model = make_model()
    make_channel(kind="slack", target=slack_server.url)
    for i in range(20):
        raise_signal(signal(model=model, client_id=f"client-{i}"))
    barrier = threading.Barrier(2)
    outcomes = []

    def worker() -> None:
        try:
            barrier.wait()
            outcomes.append(deliver_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(slack_server.requests) == 20
    sent_clients = sorted(r["json"]["text"].split(" by ")[1].split(" ")[0] for r in slack_server.requests)
    assert sent_clients == sorted(f"client-{i}" for i in range(20))
    assert sum(o.get("sent", 0) for o in outcomes) == 20
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
