"""docker compose cannot run here, so its structure is checked against the Makefile and settings."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_six_services_with_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}  # migrate: tests/project/test_compose_hardening.py
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        assert "appdata:/app/data" in services[name]["volumes"]
    assert {"pgdata", "redisdata", "appdata"} <= set(compose["volumes"])


def test_compose_commands_match_the_makefile(compose):
    makefile = (ROOT / "Makefile").read_text()
    services = compose["services"]
    assert "gunicorn monitor.wsgi" in " ".join(services["web"]["command"]) and "gunicorn monitor.wsgi" in makefile
    assert services["worker"]["command"][:4] == ["celery", "-A", "monitor.celery", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "monitor.celery", "beat"]
    assert "celery -A monitor.celery worker" in makefile and "celery -A monitor.celery beat" in makefile


def test_compose_sets_every_setting_the_design_names(compose):
    env = compose["services"]["web"]["environment"]
    settings_source = (ROOT / "monitor" / "settings.py").read_text()
    for name in ["DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "SITE_URL", "EMAIL_URL",
                 "DEFAULT_FROM_EMAIL", "DATA_ENCRYPTION_KEY", "EVIDENCE_SIGNING_KEY"]:
        assert name in env, name
        assert re.search(rf'"{name}"', settings_source), f"settings.py does not read {name}"
    assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith("redis://:")
    assert env["CELERY_BROKER_URL"].endswith("@redis:6379/0")  # with the password: tests/project/test_compose_hardening.py


def _settings_in_subprocess(tmp_path, *, show: str = "DEBUG", **env) -> subprocess.CompletedProcess:
    """Settings loaded in a fresh process; prints `show`, a comma-separated list of settings."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
                                                              "EMAIL_URL", "INGEST_MAX_BYTES", "INGEST_MAX_QUERIES"}}
    clean.update(env, MONITOR_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="monitor.settings")
    script = f"import django; django.setup(); from django.conf import settings; print([str(getattr(settings, n)) for n in {show.split(',')!r}])"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_a_bad_boolean_is_an_error_not_false(tmp_path):
    result = _settings_in_subprocess(tmp_path, DEBUG="maybe")
    assert result.returncode != 0 and "maybe" in result.stderr


def test_serving_other_hosts_without_a_secret_key_refuses_to_start(tmp_path):
    result = _settings_in_subprocess(tmp_path, ALLOWED_HOSTS="monitor.example.com")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_a_malformed_encryption_key_refuses_to_start(tmp_path):
    result = _settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEY="short")
    assert result.returncode != 0 and "DATA_ENCRYPTION_KEY must be a Fernet key" in result.stderr


def test_localhost_defaults_start_and_keep_generated_secrets_private(tmp_path):
    result = _settings_in_subprocess(tmp_path, show="SECRET_KEY")
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "local-secrets" / "SECRET_KEY"  # made by its first use, not by loading the settings
    assert secret.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert secret.read_text() in result.stdout


def test_ingest_limits_come_from_the_environment(tmp_path):
    result = _settings_in_subprocess(tmp_path, show="INGEST_MAX_BYTES,INGEST_MAX_QUERIES",
                                     INGEST_MAX_BYTES="1048576", INGEST_MAX_QUERIES="50_000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['1048576', '50000']"


@pytest.mark.parametrize(("name", "value"), [("INGEST_MAX_QUERIES", "10k"), ("INGEST_MAX_BYTES", "0"),
                                             ("INGEST_MAX_QUERIES", "2.5")])
def test_a_bad_integer_is_an_error_naming_its_variable(tmp_path, name, value):
    result = _settings_in_subprocess(tmp_path, **{name: value})
    assert result.returncode != 0 and f"{name}={value!r}" in result.stderr


def test_email_url_sets_each_email_setting_by_name(tmp_path):
    names = "EMAIL_BACKEND,EMAIL_HOST,EMAIL_PORT,EMAIL_HOST_USER,EMAIL_HOST_PASSWORD,EMAIL_USE_TLS,EMAIL_USE_SSL"
    result = _settings_in_subprocess(tmp_path, show=names, EMAIL_URL="smtp+ssl://alerts:pa%40ss@mail.example.com:465")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(["django.core.mail.backends.smtp.EmailBackend", "mail.example.com", "465",
                                         "alerts", "pa@ss", "False", "True"])


def test_an_email_url_option_nothing_reads_is_an_error(tmp_path):
    result = _settings_in_subprocess(tmp_path, EMAIL_URL="smtp://mail.example.com:25?timeout=5")
    assert result.returncode != 0 and "EMAIL_URL: unknown option(s) ['TIMEOUT']" in result.stderr
