"""The secrets a localhost-only install makes for itself, on first use.

SECRET_KEY, DATA_ENCRYPTION_KEY and EVIDENCE_SIGNING_KEY left unset hold a lazy string: the first time a process
reads one it is generated into MONITOR_DATA_DIR/local-secrets/ (one 0600 file each) unless another process got
there first, so every process (web, worker, beat, commands) uses the same value and importing settings writes
nothing. An install serving any other host must set all three; settings refuses to start without them.
"""
from __future__ import annotations

import base64
import functools
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise, lazy

GENERATORS: dict[str, Callable[[], str]] = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    # A Fernet key: 32 bytes, url-safe base64 (monitor/platform/crypto.py).
    "DATA_ENCRYPTION_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    # An Ed25519 seed: 32 bytes, base64 (audits/evidence/keys.py).
    "EVIDENCE_SIGNING_KEY": lambda: base64.b64encode(os.urandom(32)).decode(),
}
# A process that finds the file just created by another waits at most this long for that process's one write.
WRITE_WAIT_SECONDS = 5.0


def secret_setting(name: str, *, configured: str, folder: Path, serves_only_localhost: bool) -> str | Promise:
    """What settings.<name> holds: the environment's value when set; on a localhost-only install a lazy string
    read from (and first made in) folder/<name> when something uses it; on any other install an error."""
    if configured:
        return configured
    if not serves_only_localhost:
        raise ImproperlyConfigured(f"{name} must be set in the environment when ALLOWED_HOSTS serves other hosts")
    if name not in GENERATORS:
        raise ImproperlyConfigured(f"{name} is not a secret this install can generate; set it in the environment")
    return lazy(local_secret, str)(folder / name)


@functools.cache
def local_secret(path: Path) -> str:
    """The secret kept in `path`, generated there first if no process has yet. Of several processes starting
    at once, O_EXCL lets exactly one write; every one of them then reads the file, so all agree on its value.
    Cached: Django reads SECRET_KEY on every signed cookie."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path)
    except OSError as exc:  # a read-only MONITOR_DATA_DIR: say which setting is missing, not only which path failed
        raise ImproperlyConfigured(f"{path.name} is not set and cannot be generated in {path.parent} ({exc.strerror}): "
                                   "set it in the environment or make MONITOR_DATA_DIR writable") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(GENERATORS[path.name]())
    return read_secret(path)


def read_secret(path: Path) -> str:
    """The file's value, waiting out the moment between another process creating it and writing to it."""
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    while not (value := path.read_text().strip()):
        if time.monotonic() > deadline:
            raise ImproperlyConfigured(f"{path} is empty (a process stopped while writing it?): delete it and start "
                                       "again, or set the secret in the environment")
        time.sleep(0.05)
    return value
