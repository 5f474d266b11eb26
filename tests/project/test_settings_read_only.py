"""Importing settings writes nothing: a read-only container starts, and a localhost-only install makes its
secrets under MONITOR_DATA_DIR the first time a process uses one, the same file for every process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers import ROOT

# The environment a fresh localhost-only install has: no secrets, no database or broker URL (SQLite and the
# filesystem broker under MONITOR_DATA_DIR).
UNSET = {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DATA_ENCRYPTION_KEY", "EVIDENCE_SIGNING_KEY", "DEBUG",
         "ALLOWED_HOSTS"}
# What every process does on start (web, worker, commands), the system checks `manage.py check` and runserver
# run, and reading the settings that name folders.
SETUP = ("import django; django.setup(); from django.core.management import call_command; call_command('check'); "
         "from django.conf import settings as s; print(s.DATABASES['default']['NAME'], "
         "s.CELERY_BEAT_SCHEDULE_FILENAME, s.CELERY_BROKER_TRANSPORT_OPTIONS)")
# The first use of the data key: encrypt a token, or decrypt one another process made.
ENCRYPT = ("import django; django.setup(); from monitor.platform.crypto import data_fernet; "
           "print(data_fernet().encrypt(b'member rows').decode())")
DECRYPT = ("import sys, django; django.setup(); from monitor.platform.crypto import data_fernet; "
           "print(data_fernet().decrypt(sys.argv[1].encode()).decode())")


def fresh_install(data_dir: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in UNSET}
    environment.update(MONITOR_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="monitor.settings")
    return environment


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=fresh_install(data_dir), capture_output=True, text=True, timeout=120)


def python(code: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code, *args], data_dir)


def everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def data_dir_of(kind: str, tmp_path: Path) -> Path:
    """A data folder nothing may be written to: missing, read-only, or beneath a file (unwritable even for root)."""
    if kind == "missing":
        return tmp_path / "not-made-yet"
    if kind == "read-only":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "data"


@pytest.mark.parametrize("kind", ["missing", "read-only", "beneath-a-file"])
def test_settings_and_setup_write_nothing_and_start(tmp_path, kind):
    data_dir = data_dir_of(kind, tmp_path)
    started = python(SETUP, data_dir)
    assert started.returncode == 0, started.stderr
    assert "no issues" in started.stdout and str(data_dir) in started.stdout  # the folders are still named there
    assert everything_under(data_dir) == []
    assert kind != "missing" or not data_dir.exists()


def test_the_first_use_of_the_data_key_makes_its_secret_once_and_other_processes_read_it(tmp_path):
    data_dir = tmp_path / "data"
    encrypted = python(ENCRYPT, data_dir)
    assert encrypted.returncode == 0, encrypted.stderr
    secret = data_dir / "local-secrets" / "DATA_ENCRYPTION_KEY"
    # Only the key that was used: SECRET_KEY and the evidence key wait for their own first use.
    assert [path.name for path in (data_dir / "local-secrets").iterdir()] == ["DATA_ENCRYPTION_KEY"]
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    key = secret.read_text()

    decrypted = python(DECRYPT, data_dir, encrypted.stdout.strip())
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout.strip() == "member rows"
    assert secret.read_text() == key


def test_processes_starting_together_agree_on_one_generated_key(tmp_path):
    data_dir = tmp_path / "data"
    code = ("import django, hashlib; django.setup(); from django.conf import settings; "
            "print(hashlib.sha256(str(settings.SECRET_KEY).encode()).hexdigest())")
    racers = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=fresh_install(data_dir),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    answers = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in answers]
    assert len({out.strip() for out, _ in answers}) == 1
    assert [path.name for path in (data_dir / "local-secrets").iterdir()] == ["SECRET_KEY"]


def test_migrate_on_a_fresh_data_dir_makes_the_sqlite_folder_itself(tmp_path):
    data_dir = tmp_path / "fresh"
    migrated = run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], data_dir)
    assert migrated.returncode == 0, migrated.stderr
    assert (data_dir / "monitor.sqlite3").exists()


def test_a_secret_that_cannot_be_generated_is_named_at_its_first_use(tmp_path):
    data_dir = data_dir_of("beneath-a-file", tmp_path)
    encrypted = python(ENCRYPT, data_dir)
    assert encrypted.returncode != 0
    assert "DATA_ENCRYPTION_KEY is not set and cannot be generated" in encrypted.stderr
