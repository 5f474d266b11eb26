"""Tokens, passwords, keys and webhook URLs never reach a log, even at DEBUG level."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from monitor.alerts.lifecycle import raise_signal
from monitor.models import Delivery
from tests.factories import ingest_token, make_channel, make_model, make_user, query, signal, user_token
from tests.servers import WebhookServer
from tests.workers import ROOT, database_url_for_subprocess

PASSWORD = "correct-horse-battery-staple-9"


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


@pytest.mark.django_db(transaction=True)
def test_secrets_used_across_the_product_never_appear_in_logs(client, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    model = make_model()
    ingest, personal = ingest_token(model=model), user_token(role="admin")
    make_user(role="admin", username="ada", password=PASSWORD)
    webhook = WebhookServer()
    secret_path = "/services/T0SECRET/B0SECRET/a1b2c3d4e5f6g7h8i9j0"
    webhook_url = webhook.url.replace("/services/T000/B000/XXXX", secret_path)
    secrets = {"ingestion token": ingest, "personal token": personal, "password": PASSWORD,
               # str(): a localhost-only install's secrets are lazy strings, made on first use.
               "webhook path": secret_path, "SECRET_KEY": str(settings.SECRET_KEY),
               "DATA_ENCRYPTION_KEYS": str(settings.DATA_ENCRYPTION_KEYS[0]),
               "EVIDENCE_SIGNING_KEY": str(settings.EVIDENCE_SIGNING_KEY)}
    try:
        # Ingestion and reads with both tokens, a wrong token, logins that fail and succeed.
        client.post("/api/v1/models/credit/queries", {"queries": [query()]}, content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {ingest}")
        client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {personal}")
        client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {personal[:-4]}abcd")
        client.post(reverse("login"), {"username": "ada", "password": PASSWORD + "x"})
        client.post(reverse("login"), {"username": "ada", "password": PASSWORD})
        # A Slack channel whose webhook first fails, then refuses the connection: every error path runs.
        make_channel(kind="slack", target=webhook_url)
        raise_signal(signal(model=model, client_id="c-1", severity="critical"))
        webhook.answer((500, "oops"), (503, "later"))
        environment = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "LOG_LEVEL": "DEBUG"}
        command = [sys.executable, "manage.py", "send_notifications"]
        outputs = [subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)]
    finally:
        webhook.close()
    Delivery.objects.update(next_attempt_at=timezone.now())
    outputs.append(subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60))
    assert all(result.returncode == 0 for result in outputs), [result.stderr for result in outputs]
    assert "Slack" in Delivery.objects.first().last_error  # the error paths really ran

    logged = "\n".join(record.getMessage() for record in caplog.records)
    logged += "\n".join(result.stdout + result.stderr for result in outputs)
    captured = capsys.readouterr()
    assert len(logged) > 200  # something was logged, at DEBUG, in both processes
    assert secrets_in(logged + captured.out + captured.err, secrets) == []
