"""A private PostgreSQL cluster for bench/scale.py, with production defaults: a fresh `initdb`, the default
postgresql.conf (autovacuum on, fsync on, full_page_writes on, shared_buffers and max_wal_size as shipped), only
the port, the listen address and the socket directory set so that it cannot collide with the machine's shared
server (which runs with autovacuum off and so would hide the bloat this bench is meant to show).

The idea is copied from tests/faults/services.py (not imported: the bench must not depend on the test suite):
the newest server binaries under /usr/lib/postgresql/*/bin, a free loopback port, trust authentication, run as
the `postgres` OS user when we are root (the server refuses to run as root).

The data directory goes in a fresh folder under the candidate parent with the most free space (BENCH_PG_DIR if
set, else /work, the temporary folder and /var/tmp, those the `postgres` user can reach); `private_postgres()`
stops the server and deletes that folder on the way out, also on an exception, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries installed from the distribution's packages."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


def _reachable_by_others(path: Path) -> bool:
    """Every folder from / down to `path` can be traversed by a user who is neither owner nor group."""
    for folder in [path, *path.parents]:
        try:
            if not os.stat(folder).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def roomiest_parent() -> Path:
    """Where the data directory goes: BENCH_PG_DIR if set, else the reachable candidate with the most free space."""
    if os.environ.get("BENCH_PG_DIR"):
        return Path(os.environ["BENCH_PG_DIR"])
    candidates = [Path(p) for p in ("/work", tempfile.gettempdir(), "/var/tmp") if Path(p).is_dir()]  # nosec B108 (mkdtemp under it)
    usable = [p for p in candidates if os.geteuid() != 0 or _reachable_by_others(p)] or candidates
    return max(usable, key=lambda p: shutil.disk_usage(p).free)


class PrivatePostgres:
    """A throwaway cluster with the shipped configuration; `url(name)` points at a database on it."""

    def __init__(self, parent: Path | None = None) -> None:
        self.bin = postgres_bin()
        self.parent = parent or roomiest_parent()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-scale-pg-", dir=self.parent))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.started = False
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(self.dir, 0o700)

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, program: str, *args: str, timeout: float = 300) -> str:
        command = [str(self.bin / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        # Only what keeps it private; everything else (autovacuum included) stays as initdb wrote it.
        settings = {"port": self.port, "listen_addresses": "127.0.0.1", "unix_socket_directories": self.dir}
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start")
        self.started = True

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")
            except Exception:  # noqa: BLE001 - fall back to an immediate stop, then remove the folder anyway
                with contextlib.suppress(Exception):
                    self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def _raise_on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def private_postgres(parent: Path | None = None) -> Iterator[PrivatePostgres]:
    """Start a private cluster, yield it, and stop it and delete its folder whatever happens (SIGTERM included:
    it is turned into SystemExit here so that the cleanup runs)."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    server = PrivatePostgres(parent)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
