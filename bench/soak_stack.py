"""What the soak runs against and how it watches it: the model, its traffic and calibration, the people who log in,
the Celery worker process, and the threads that sample the scanner's lag and each process's CPU or stand in for
autovacuum."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from common import ROOT

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench_soak")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
SLUG = "soak"
N_FEATURES = 20
N_CLIENTS = 500


def register(rng: np.random.Generator):
    """A 20-feature RandomForest with members, non-members and a population (as bench/detect.py does)."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from monitor.registry.registration import Upload, register_model

    X = rng.normal(size=(12_000, N_FEATURES)) * rng.uniform(0.5, 20, N_FEATURES) + rng.uniform(-50, 50, N_FEATURES)
    X[:, :5] = np.round(X[:, :5])
    y = np.where(X[:, 5] + 0.3 * X[:, 6] + rng.normal(scale=8, size=len(X)) > X[:, 5].mean(), "yes", "no")
    names = [f"f{i:02d}" for i in range(N_FEATURES)]

    def csv(rows: np.ndarray) -> bytes:
        lines = [",".join(names + ["label"])] + [",".join(f"{v:.6g}" for v in X[i]) + f",{y[i]}" for i in rows]
        return "\n".join(lines).encode()

    members, nonmembers, population = np.arange(0, 3000), np.arange(3000, 6000), np.arange(6000, 12_000)
    estimator = RandomForestClassifier(n_estimators=30, max_depth=12, random_state=0, n_jobs=1).fit(X[members], y[members])
    model = register_model(slug=SLUG, name="Soak", label_column="label", artifact=Upload(sio.dumps(estimator), "rf.skops"),
                           members=Upload(csv(members)), nonmembers=Upload(csv(nonmembers)),
                           population=Upload(csv(population)))
    # What the stored rows carry must round-trip through float32 exactly as the API stores it.
    return model, estimator, X[population].astype(np.float32)


def make_traffic(pool: np.ndarray, estimator, *, rate: float, seconds: float, seed: int):
    """Benign traffic from N_CLIENTS clients at `rate` queries/s in total, with the model's own answers."""
    from monitor.demo.traffic import benign_traffic

    traffic = benign_traffic(pool.astype(np.float64), n_clients=N_CLIENTS, seed=seed, start=time.time() - seconds,
                             duration=seconds, queries_per_day=rate / N_CLIENTS * 86_400)
    outputs = estimator.predict_proba(traffic.features.astype(np.float64)).astype(np.float32)
    return traffic, outputs


def calibrate(model, estimator, traffic, outputs, n_reference: int) -> None:
    """Store the first `n_reference` rows directly and calibrate the detectors on them (known-benign)."""
    from datetime import UTC, datetime

    from monitor.detection.calibration import calibrate_model
    from monitor.ingestion.store import safe_high_water, store_queries
    from monitor.ingestion.validate import QueryBatch
    from monitor.models import DetectorState

    for lo in range(0, n_reference, 50_000):
        hi = min(lo + 50_000, n_reference)
        store_queries(model, QueryBatch(
            client_ids=traffic.client_ids[lo:hi].tolist(),
            timestamps=[datetime.fromtimestamp(t, tz=UTC) for t in traffic.timestamps[lo:hi]],
            features=traffic.features[lo:hi], outputs=outputs[lo:hi], request_ids=[None] * (hi - lo)))
    calibrate_model(model)
    DetectorState.objects.filter(model=model).update(watermark_id=safe_high_water(model))


def people():
    """A security user who logs in through the login form, and a personal API token (audits, audit status)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from monitor.models import ApiToken

    password = secrets.token_urlsafe(18)
    user = get_user_model().objects.create_user("soak-security", password=password)
    user.groups.add(Group.objects.get(name="security"))
    return user.username, password, ApiToken.issue(kind=ApiToken.USER, user=user)[1]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): how the watchdog finds what this run started."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def celery_worker(concurrency: int) -> Iterator[Path]:
    """One Celery worker (prefork, `concurrency` children) on the bench database and broker; yields its log."""
    log = Path(tempfile.mkstemp(prefix="soak-worker-", suffix=".log")[1])
    env = {**os.environ, "DATABASE_URL": URL, "CELERY_BROKER_URL": BROKER, "DJANGO_SETTINGS_MODULE": "monitor.settings",
           "LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "monitor.celery", "worker", "--loglevel=WARNING",
                                   f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
                                   "-n", f"soak-{secrets.token_hex(3)}@%h"], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        yield log
    finally:
        children = descendants(worker.pid)
        worker.terminate()  # warm shutdown: finishes running tasks...
        try:
            worker.wait(5)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGQUIT)  # ...so a running audit is cut short by a cold shutdown
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for_worker(deadline: float) -> None:
    from monitor.models import WorkerHeartbeat
    from monitor.tasks import record_heartbeat

    record_heartbeat.delay("soak-worker")
    while time.time() < deadline:
        if WorkerHeartbeat.objects.filter(name="soak-worker").exists():
            return
        time.sleep(0.3)
    raise SystemExit("the Celery worker did not run a task within 90 s")


TICKS = os.sysconf("SC_CLK_TCK")
DB_NAME = URL.rsplit("/", 1)[-1]


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this run's processes, by role: the load generator (this process), gunicorn and the
    Celery worker (its descendants), PostgreSQL backends of the bench database (named in their process title)."""
    mine = set(descendants(os.getpid()))
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, IndexError, ValueError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if pid == os.getpid():
                role = "load generator"
            elif pid in mine:
                role = "gunicorn" if b"gunicorn" in cmdline else "celery worker" if b"celery" in cmdline else "other child"
            elif cmdline.startswith(b"postgres: ") and f" {DB_NAME} ".encode() in cmdline:
                role = "postgres (bench db)"
            else:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (role, (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (every process, ours and others')."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # minus idle and iowait


class Sampler(threading.Thread):
    """Every second: the scanner's watermark against the newest committed query (its own connection), and the
    CPU time of each process of the run."""

    def __init__(self, model_id: int) -> None:
        super().__init__(daemon=True)
        self.model_id, self.stop = model_id, threading.Event()
        self.samples: list[tuple[float, int, int, float]] = []  # time, newest id, watermark, age of oldest unscanned
        self.scans: dict[str, dict] = {}  # last_scan["at"] -> last_scan
        self.cpu_first = cpu_by_process()
        self.cpu_last = dict(self.cpu_first)
        self.machine_first = self.machine_last = machine_cpu()
        self.cpu_frozen = False
        self.cpu_trace: list[tuple[float, dict[str, float]]] = []

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per role while the sampler ran (a backend that exited between samples loses ≤ 1 s)."""
        used: dict[str, float] = defaultdict(float)
        for pid, (role, seconds) in self.cpu_last.items():
            before = self.cpu_first.get(pid)
            used[role] += seconds - (before[1] if before and before[0] == role else 0.0)
        used["whole machine"] = self.machine_last - self.machine_first
        return used

    def read(self, conn) -> tuple[int, int, float, dict]:
        watermark, last_scan = conn.execute(
            "SELECT watermark_id, last_scan FROM monitor_detectorstate WHERE model_id = %s", [self.model_id]).fetchone()
        newest = conn.execute("SELECT COALESCE(MAX(id), 0) FROM monitor_querylog WHERE model_id = %s",
                              [self.model_id]).fetchone()[0]
        oldest = conn.execute("SELECT EXTRACT(EPOCH FROM now() - ts)::float8 FROM monitor_querylog "
                              "WHERE model_id = %s AND id > %s ORDER BY id LIMIT 1", [self.model_id, watermark]).fetchone()
        return newest, watermark, (oldest[0] if oldest else 0.0), last_scan or {}

    def run(self) -> None:
        import psycopg

        with psycopg.connect(URL, autocommit=True) as conn:
            while not self.stop.wait(1.0):
                newest, watermark, age, last_scan = self.read(conn)
                self.samples.append((time.time(), newest, watermark, age))
                if last_scan.get("at"):
                    self.scans[last_scan["at"]] = last_scan
                if not self.cpu_frozen:
                    self.cpu_last.update(cpu_by_process())
                    self.machine_last = machine_cpu()
                    self.cpu_trace.append((time.time(), dict(self.cpu_seconds())))


VACUUMED = ("monitor_queryrollup", "monitor_clientdayrollup", "monitor_modelhourrollup", "monitor_scannerstate",
            "monitor_querylog")


class Vacuumer(threading.Thread):
    """Stands in for autovacuum when the server has it off: VACUUM (ANALYZE) of the tables the load rewrites
    (each rollup fold updates ~batch rollup rows; each scan chunk rewrites its clients' scanner state) every 60 s,
    autovacuum's default naptime."""

    def __init__(self, start: float) -> None:
        super().__init__(daemon=True)
        self.first, self.stop = start, threading.Event()
        self.seconds: list[float] = []

    def run(self) -> None:
        import psycopg

        with psycopg.connect(URL, autocommit=True) as conn:
            due = self.first
            while not self.stop.wait(max(0.0, due - time.time())):
                started = time.perf_counter()
                conn.execute(f"VACUUM (ANALYZE) {', '.join(VACUUMED)}")  # constant table names
                self.seconds.append(time.perf_counter() - started)
                due += 60.0


def dead_tuples(conn) -> str:
    rows = conn.execute("SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(%s) "
                        "ORDER BY relname", [list(VACUUMED[:4])]).fetchall()
    return ", ".join(f"{name.removeprefix('monitor_')} {live:,} live / {dead:,} dead" for name, live, dead in rows)
