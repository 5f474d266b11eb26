"""Private, real PostgreSQL and Redis instances the fault tests may stop and restart, and the app as real
processes (gunicorn, Celery worker, Celery beat) pointed at them.

The machine's shared PostgreSQL (5432) and Redis (6379) serve every other test run on it, so the fault tests
never touch them: each session initdb's a cluster of its own and starts a redis-server of its own, both on free
loopback ports, in a temporary directory that is removed afterwards.
"""
from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries installed from the distribution's packages."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A throwaway cluster: trust auth on loopback, fsync off, owned and run by the `postgres` OS user."""

    def __init__(self, workdir: Path) -> None:
        self.bin = postgres_bin()
        self.dir = workdir / "pg"
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.dir.mkdir()
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(workdir, user.pw_uid, user.pw_gid)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        settings = {"port": self.port, "listen_addresses": "127.0.0.1", "unix_socket_directories": self.dir,
                    "fsync": "off", "full_page_writes": "off", "max_connections": 60}
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in settings.items())
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "monitor")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/monitor"

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Fast shutdown: open transactions are rolled back and every client is disconnected."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, cwd="/").returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def destroy(self) -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def connect(self):
        import psycopg

        return psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True, connect_timeout=5,
                               options="-c TimeZone=UTC")  # times read back as the app (UTC) sees them

    def scalar(self, sql: str, params: tuple = ()) -> object:
        with self.connect() as conn:
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()) -> dict | None:
        """The first row as a dict of its columns, or None."""
        from psycopg.rows import dict_row

        with self.connect() as conn:
            return conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()


class PrivateRedis:
    """redis-server without persistence: a stop loses every queued message, as a real crash would."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: accepts_connections(self.port), timeout=20, what="redis-server to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        if not self.running():
            self.start()


class Services:
    """The private PostgreSQL and Redis, and the environment the app's processes run in."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="monitor-faults-"))
        self.workdir.chmod(0o755)
        self.postgres = PrivatePostgres(self.workdir)
        self.redis = PrivateRedis(self.workdir)
        self.data_dir = self.workdir / "app-data"
        self.data_dir.mkdir()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "monitor.settings",
            "DATABASE_URL": self.postgres.url,
            "CELERY_BROKER_URL": self.redis.url,
            "MONITOR_DATA_DIR": str(self.data_dir),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATA_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "EVIDENCE_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
            "LOG_LEVEL": "WARNING",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("REQUIRE_SERVICES", None)

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def seed(self, *steps: tuple[str, dict]) -> list[dict]:
        """Run actions of tests/faults/seed.py, in one process, against the private database; their answers."""
        done = subprocess.run([sys.executable, "-m", "tests.faults.seed", json.dumps(steps)], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"seed {steps} failed: {done.stdout}{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.postgres.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)


class AppProcess:
    """One of the app's processes, its output kept in a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, name: str, command: list[str], env: dict, workdir: Path) -> None:
        self.name = name
        self.output = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._file = open(self.output, "wb")  # closed in stop()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, no goodbye to the broker."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> str:
        if self.alive():
            self.process.send_signal(how)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._file.close()
        return self.log()

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_output(self, text: str, *, timeout: float = 60) -> None:
        """Until `text` shows in the process's output (e.g. a Celery worker's "ready.")."""
        wait_until(lambda: text in self.log() or not self.alive(), timeout=timeout, what=f"{self.name} to print {text!r}")
        if text not in self.log():
            raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")


def start_web(services: Services, *, workers: int = 2) -> tuple[AppProcess, str]:
    port = free_port()
    web = AppProcess("web", [sys.executable, "-m", "gunicorn", "monitor.wsgi", "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers), "--timeout", "60", "--graceful-timeout", "5",
                             "--log-level", "warning"], services.env, services.workdir)
    wait_until(lambda: accepts_connections(port) or not web.alive(), timeout=60, what="gunicorn to listen")
    if not web.alive():
        raise RuntimeError(f"gunicorn did not start:\n{web.stop()}")
    return web, f"http://127.0.0.1:{port}"


def start_worker(services: Services, name: str = "worker", **env: str) -> AppProcess:
    return AppProcess(name, [sys.executable, "-m", "celery", "-A", "monitor.celery", "worker", "--pool=solo",
                             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO",
                             "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"], {**services.env, **env}, services.workdir)


def start_beat(services: Services) -> AppProcess:
    """Celery beat with the production schedule's tasks on short intervals (tests/faults/beat.py)."""
    return AppProcess("beat", [sys.executable, "-m", "celery", "-A", "tests.faults.beat", "beat", "--loglevel=INFO",
                               "-s", str(services.workdir / f"beat-schedule-{uuid.uuid4().hex[:6]}")],
                      services.env, services.workdir)
