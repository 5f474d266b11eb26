"""What the benchmarks share: a fresh PostgreSQL database, Django on it, and gunicorn on a free port."""
from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str, *, reuse: bool = False) -> None:
    """Point this process at `url` (recreated unless `reuse`), set Django up and migrate."""
    if not reuse:
        recreate_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def setup_private_django(prefix: str) -> str:
    """Django for a benchmark that must leave every other database alone: on DATABASE_URL when it is set (migrated,
    nothing dropped: the caller registers under a fresh slug), else on SQLite in a fresh folder under
    MONITOR_DATA_DIR (a temporary folder when that is unset). Returns what it runs on, for the report."""
    import tempfile

    url = os.environ.get("DATABASE_URL")
    if url:
        setup_django(url, reuse=True)
        return f"the database at DATABASE_URL ({urlparse(url).scheme})"
    parent = os.environ.get("MONITOR_DATA_DIR")
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.environ["MONITOR_DATA_DIR"] = folder
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return f"SQLite in {folder}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(url: str, *, workers: int = 2) -> Iterator[int]:
    """gunicorn on loopback against the database at `url`; yields its port once it accepts connections."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "monitor.settings", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "monitor.wsgi", "--bind", f"127.0.0.1:{port}",
                               "--workers", str(workers), "--timeout", "300", "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def post_all(port: int, token: str, path: str, bodies: list[bytes], senders: int) -> float:
    """POST each JSON body to `path` with the bearer token from `senders` connections at once; the seconds taken.
    Any answer but 201 stops the benchmark."""
    def send(chunk: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for body in chunk:
            conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 201:
                raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        conn.close()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(senders) as pool:
        for future in [pool.submit(send, bodies[i::senders]) for i in range(senders)]:
            future.result()
    return time.perf_counter() - started
