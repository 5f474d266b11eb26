"""Soak: mixed load for --duration seconds (default 600) on PostgreSQL + Redis + gunicorn (2 workers) + one
Celery worker, all on loopback. Ingestion at a steady rate paced by a clock (POST /queries, batches with
request_id), predict calls, dashboard reads on a logged-in session (overview, model page, alerts), a query
scan enqueued on the worker every 60 s, one audit requested through the API early in the run and polled
until it finishes. Prints the sustained ingestion rate, p50/p99 latency and errors per endpoint, queries
sent vs stored (must be equal: non-zero exit otherwise), scanner lag and scan/audit durations.

Anchors, measured in the same run before the mixed load, on the same stack with nothing else running:
ingestion alone as fast as the senders go (capacity), and ingestion alone at the target rate (latency).

Usage: python bench/soak.py [--duration S] [--ingest-rate Q/S] [--batch N] [--senders N] [--predict-rate R/S]
                            [--page-rate R/S] [--worker-concurrency N] [--anchor-seconds S]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/monitor_bench_soak, dropped
and recreated) and Redis at BENCH_BROKER_URL (default redis://127.0.0.1:6379/13, flushed). Bounded: a
watchdog stops everything at duration + 1.5 × anchor seconds + 150 s (or --max-wall).
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from common import ROOT, gunicorn, setup_django  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/monitor_bench_soak")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
SLUG = "soak"
N_FEATURES = 20
N_CLIENTS = 500
PREDICT_CLIENTS = 20
SCAN_EVERY = 60.0
AUDIT_AT = 10.0
INGEST = "POST /queries"
PAGES = ("/", f"/models/{SLUG}/", "/alerts/")


# --- measurement -------------------------------------------------------------------------------------

class Stats:
    """Per endpoint: latency of each 2xx answer, and every failure by status or exception type."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, Counter] = defaultdict(Counter)
        self.log: list[tuple[float, str, float, str]] = []  # when it ended, endpoint, ms, outcome (for --dump)

    def ok(self, endpoint: str, ms: float) -> None:
        with self.lock:
            self.latency[endpoint].append(ms)
            self.log.append((time.time(), endpoint, ms, "ok"))

    def error(self, endpoint: str, what: str, ms: float = float("nan")) -> None:
        with self.lock:
            self.errors[endpoint][what] += 1
            self.latency.setdefault(endpoint, [])
            self.log.append((time.time(), endpoint, ms, what))


class Http:
    """One keep-alive connection (gunicorn's sync workers close it after each answer; http.client reopens)."""

    def __init__(self, port: int, *, timeout: float = 120.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes, float, http.client.HTTPResponse]:
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
        except Exception:
            self.conn.close()
            raise
        return response.status, data, (time.perf_counter() - started) * 1000, response


def timed(stats: Stats, endpoint: str, client: Http, method: str, path: str, body: bytes | None = None,
          headers: dict | None = None, *, expect: int = 200) -> bytes | None:
    """One request, recorded; the body on the expected status, None otherwise."""
    try:
        status, data, ms, _ = client.call(method, path, body, headers)
    except Exception as exc:  # timeouts, resets: counted, never fatal
        stats.error(endpoint, type(exc).__name__)
        return None
    if status != expect:
        stats.error(endpoint, f"HTTP {status}", ms)
        return None
    stats.ok(endpoint, ms)
    return data


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- setup ---------------------------------------------------------------------------------------------

def register(rng: np.random.Generator):
    """A 20-feature RandomForest with members, non-members and a population (as bench/detect.py does)."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from monitor.registry import Upload, register_model

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
    from monitor.traffic import benign_traffic

    traffic = benign_traffic(pool.astype(np.float64), n_clients=N_CLIENTS, seed=seed, start=time.time() - seconds,
                             duration=seconds, queries_per_day=rate / N_CLIENTS * 86_400)
    outputs = estimator.predict_proba(traffic.features.astype(np.float64)).astype(np.float32)
    return traffic, outputs


def calibrate(model, estimator, traffic, outputs, n_reference: int) -> None:
    """Store the first `n_reference` rows directly and calibrate the detectors on them (known-benign)."""
    from datetime import UTC, datetime

    from monitor.ingest import QueryBatch, store_queries
    from monitor.models import DetectorState
    from monitor.scanning import calibrate_model, safe_high_water

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


def login(port: int, username: str, password: str) -> str:
    """The login form, with its CSRF token, as a browser does; returns the Cookie header of the session."""
    client = Http(port)
    status, html, _, response = client.call("GET", "/login/")
    cookies = dict(c.split(";")[0].split("=", 1) for c in response.headers.get_all("Set-Cookie") or [])
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if status != 200 or match is None or "csrftoken" not in cookies:
        raise SystemExit(f"login page: HTTP {status}, no CSRF token")
    form = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": match.group(1).decode(),
                      "next": "/"}).encode()
    status, body, _, response = client.call("POST", "/login/", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookies['csrftoken']}"})
    cookies.update(dict(c.split(";")[0].split("=", 1) for c in response.headers.get_all("Set-Cookie") or []))
    if status != 302 or "sessionid" not in cookies:
        raise SystemExit(f"login failed: HTTP {status} {body[:200]!r}")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


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


# --- load ---------------------------------------------------------------------------------------------

class Ingestion:
    """Batches of `batch` rows; batch k of a phase is due at start + k·batch/rate (unpaced when rate is None).
    A failed batch is sent again with the same request ids until it is acknowledged (idempotency)."""

    def __init__(self, *, prefix: str, first_row: int, batch: int, rate: float | None, start: float, end: float,
                 rows: tuple[list[str], np.ndarray, np.ndarray]) -> None:
        self.prefix, self.first_row, self.batch, self.rate, self.start, self.end = prefix, first_row, batch, rate, start, end
        self.client_ids, self.features, self.outputs = rows
        self.lock = threading.Lock()
        self.claimed = self.acked_batches = self.accepted = self.duplicates = 0
        self.unacknowledged = 0
        self.last_ack = start
        self.per_minute: Counter = Counter()
        self.max_slip = 0.0

    def claim(self) -> tuple[int, float] | None:
        """The next batch and when it is due; None at the end of the phase (late batches are not made up)."""
        with self.lock:
            k = self.claimed
            due = self.start if self.rate is None else self.start + k * self.batch / self.rate
            if due >= self.end or time.time() >= self.end:
                return None
            self.claimed += 1
            return k, due

    def body(self, k: int) -> bytes:
        n = len(self.client_ids)
        rows = []
        for i in range(self.first_row + k * self.batch, self.first_row + (k + 1) * self.batch):
            j = i % n
            rows.append({"client_id": self.client_ids[j], "features": self.features[j], "output": self.outputs[j],
                         "request_id": f"{self.prefix}-{i}"})
        return orjson.dumps({"queries": rows}, option=orjson.OPT_SERIALIZE_NUMPY)

    def acked(self, payload: bytes) -> None:
        answer = orjson.loads(payload)
        now = time.time()
        with self.lock:
            self.acked_batches += 1
            self.accepted += answer["accepted"]
            self.duplicates += answer["duplicates"]
            self.last_ack = max(self.last_ack, now)
            self.per_minute[int((now - self.start) // 60)] += answer["accepted"]

    @property
    def rows_sent(self) -> int:
        return self.claimed * self.batch

    @property
    def next_row(self) -> int:
        return self.first_row + self.claimed * self.batch


def ingest_sender(plan: Ingestion, port: int, token: str, stats: Stats, endpoint: str, give_up: threading.Event) -> None:
    client = Http(port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while (claim := plan.claim()) is not None:
        k, due = claim
        delay = due - time.time()
        if delay > 0 and give_up.wait(delay):
            break
        plan.max_slip = max(plan.max_slip, -delay)
        body = plan.body(k)
        while True:
            answer = timed(stats, endpoint, client, "POST", f"/api/v1/models/{SLUG}/queries", body, headers, expect=201)
            if answer is not None:
                plan.acked(answer)
                break
            if give_up.wait(0.5):
                with plan.lock:
                    plan.unacknowledged += 1
                return


def run_ingestion(plan: Ingestion, senders: int, port: int, token: str, stats: Stats, endpoint: str,
                  give_up: threading.Event) -> list[threading.Thread]:
    threads = [threading.Thread(target=ingest_sender, args=(plan, port, token, stats, endpoint, give_up), daemon=True)
               for _ in range(senders)]
    for thread in threads:
        thread.start()
    return threads


def paced(rate: float, start: float, end: float, stop: threading.Event) -> Iterator[int]:
    """Ticks at `rate` per second from `start` to `end`; a late tick fires at once, missed ones are not made up."""
    k, due = 0, start
    while due < end and not stop.is_set():
        delay = due - time.time()
        if delay > 0 and stop.wait(delay):
            return
        yield k
        k += 1
        due = max(due + 1 / rate, time.time())


class Predicts:
    def __init__(self) -> None:
        self.rows_answered = self.rows_failed = 0


def predict_loop(port: int, token: str, pool: np.ndarray, rate: float, rows: int, start: float, end: float,
                 stats: Stats, stop: threading.Event, tally: Predicts) -> None:
    client = Http(port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for k in paced(rate, start, end, stop):
        lo = (k * rows) % (len(pool) - rows)
        body = orjson.dumps({"client_id": f"pred-{k % PREDICT_CLIENTS:02d}", "features": pool[lo:lo + rows]},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        if timed(stats, "POST /predict", client, "POST", f"/api/v1/models/{SLUG}/predict", body, headers) is None:
            tally.rows_failed += rows
        else:
            tally.rows_answered += rows


def page_loop(port: int, cookie: str, rate: float, start: float, end: float, stats: Stats, stop: threading.Event) -> None:
    client = Http(port)
    for k in paced(rate, start, end, stop):
        path = PAGES[k % len(PAGES)]
        timed(stats, f"GET {path}", client, "GET", path, headers={"Cookie": cookie})


class AuditWatch:
    def __init__(self) -> None:
        self.run_id: int | None = None
        self.requested = self.seen_done = 0.0
        self.last: dict = {}


def audit_loop(port: int, token: str, start: float, stats: Stats, stop: threading.Event, watch: AuditWatch) -> None:
    client = Http(port)
    headers = {"Authorization": f"Bearer {token}"}
    if stop.wait(max(0.0, start - time.time())):
        return
    watch.requested = time.time()
    answer = timed(stats, "POST /audits", client, "POST", f"/api/v1/models/{SLUG}/audits", headers=headers, expect=202)
    if answer is None:
        return
    watch.run_id = orjson.loads(answer)["id"]
    while not stop.wait(3.0):
        answer = timed(stats, "GET /audits/{id}", client, "GET", f"/api/v1/audits/{watch.run_id}", headers=headers)
        if answer is not None:
            watch.last = orjson.loads(answer)
            if watch.last["status"] in ("done", "failed"):
                watch.seen_done = time.time()
                return


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


VACUUMED = ("monitor_queryrollup", "monitor_clientdayrollup", "monitor_modelhourrollup", "monitor_detectorstate",
            "monitor_querylog")


class Vacuumer(threading.Thread):
    """Stands in for autovacuum when the server has it off: VACUUM (ANALYZE) of the tables the load rewrites
    (each ingested batch updates ~batch rollup rows; each scan chunk rewrites the detector state) every 60 s,
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


# --- the run -------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of mixed load")
    parser.add_argument("--ingest-rate", type=float, default=4000.0, help="target ingestion, queries/s")
    parser.add_argument("--batch", type=int, default=250, help="queries per POST /queries")
    parser.add_argument("--senders", type=int, default=4, help="concurrent ingestion connections")
    parser.add_argument("--predict-rate", type=float, default=5.0, help="POST /predict per second")
    parser.add_argument("--predict-rows", type=int, default=5, help="rows per predict call")
    parser.add_argument("--page-rate", type=float, default=1.0, help="dashboard page loads per second (3 pages in turn)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="the one Celery worker's processes")
    parser.add_argument("--anchor-seconds", type=float, default=20.0, help="ingestion alone at the target rate (the unpaced anchor runs half as long)")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="do not stand in for autovacuum when the server has it off (see the output)")
    parser.add_argument("--max-wall", type=float, default=None, help="hard cap on the whole run, seconds")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every request (seconds since the mixed load started, endpoint, ms, outcome), the "
                             "scanner samples and the scans enqueued to this JSON file")
    args = parser.parse_args()
    if BROKER.rstrip("/").endswith("/15"):
        raise SystemExit("redis db 15 is reserved; pick another BENCH_BROKER_URL")
    wall_start = time.time()
    cap = args.max_wall or args.duration + 1.5 * args.anchor_seconds + 150
    cap_deadline = wall_start + cap

    def cap_hit() -> None:
        print(f"soak: hard cap of {cap:.0f} s reached, stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it also wakes a main thread blocked in join()

    def last_resort() -> None:
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(3)

    watchdogs = [threading.Timer(cap, cap_hit), threading.Timer(cap + 30, last_resort)]
    for timer in watchdogs:
        timer.daemon = True
        timer.start()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args, wall_start, cap_deadline)
    except KeyboardInterrupt:
        print("soak: interrupted; gunicorn and the worker were stopped", file=sys.stderr)
        return 130
    finally:
        for timer in watchdogs:
            timer.cancel()


def run(args: argparse.Namespace, wall_start: float, cap_deadline: float) -> int:
    import psycopg
    import redis

    load_before = os.getloadavg()
    os.environ["CELERY_BROKER_URL"] = BROKER  # this process enqueues scans; gunicorn inherits it (audits)
    redis.Redis.from_url(BROKER).flushdb()
    setup_django(URL)
    from monitor.tasks import scan_model_queries

    rng = np.random.default_rng(0)
    model, estimator, pool = register(rng)
    reference_seconds = 60.0
    planned = args.ingest_rate * (reference_seconds + args.duration + args.anchor_seconds) + 40 * args.batch
    traffic, outputs = make_traffic(pool, estimator, rate=planned / (reference_seconds + args.duration + args.anchor_seconds),
                                    seconds=reference_seconds + args.duration + args.anchor_seconds, seed=1)
    n_reference = int(np.searchsorted(traffic.timestamps, traffic.timestamps[0] + reference_seconds))
    calibrate(model, estimator, traffic, outputs, n_reference)
    rows = (traffic.client_ids[n_reference:].tolist(), traffic.features[n_reference:], outputs[n_reference:])
    username, password, user_token = people()
    from monitor.models import ApiToken

    ingest_token = ApiToken.issue(kind=ApiToken.INGEST, model=model)[1]
    predict_pool = pool[::-1].copy()
    setup_seconds = time.time() - wall_start
    stats, give_up = Stats(), threading.Event()

    with celery_worker(args.worker_concurrency) as worker_log, gunicorn(URL) as port:
        try:
            wait_for_worker(time.time() + 90)
        except SystemExit:
            print(worker_log.read_text()[-3000:], file=sys.stderr)
            raise
        cookie = login(port, username, password)
        warm = Http(port)  # imports, the model cache and a connection in both gunicorn workers, untimed
        for _ in range(4):
            for path in PAGES:
                warm.call("GET", path, headers={"Cookie": cookie})
            warm.call("POST", f"/api/v1/models/{SLUG}/predict", orjson.dumps(
                {"client_id": "warm-up", "features": pool[:2]}, option=orjson.OPT_SERIALIZE_NUMPY),
                {"Authorization": f"Bearer {ingest_token}", "Content-Type": "application/json"})

        # Anchor 1: ingestion alone, unpaced (capacity of this stack for this load shape).
        now = time.time()
        capacity = Ingestion(prefix="anchor-capacity", first_row=0, batch=args.batch, rate=None, start=now,
                             end=now + args.anchor_seconds / 2, rows=rows)
        for thread in run_ingestion(capacity, args.senders, port, ingest_token, stats, "anchor: POST /queries unpaced", give_up):
            thread.join()
        capacity_rate = capacity.accepted / (capacity.last_ack - capacity.start)
        # Anchor 2: ingestion alone at the target rate (latency without the other traffic).
        now = time.time()
        alone = Ingestion(prefix="anchor-alone", first_row=capacity.next_row, batch=args.batch, rate=args.ingest_rate,
                          start=now, end=now + args.anchor_seconds, rows=rows)
        for thread in run_ingestion(alone, args.senders, port, ingest_token, stats, "anchor: POST /queries paced", give_up):
            thread.join()
        # The anchors' rows are not the soak's: the scanner starts after them.
        from django.db import connection

        from monitor.models import DetectorState
        from monitor.scanning import safe_high_water

        DetectorState.objects.filter(model=model).update(watermark_id=safe_high_water(model))
        with connection.cursor() as cursor:  # planner statistics for the rows setup and the anchors wrote
            cursor.execute("ANALYZE")

        # The mixed load.
        sampler = Sampler(model.pk)
        sampler.start()
        start = time.time() + 0.5
        end = start + args.duration
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            autovacuum = cursor.fetchone()[0] == "on"
        vacuumer = Vacuumer(start + SCAN_EVERY / 2) if not autovacuum and not args.no_vacuum else None
        if vacuumer:
            vacuumer.start()
        stop, tally, watch = threading.Event(), Predicts(), AuditWatch()
        soak = Ingestion(prefix="soak", first_row=alone.next_row, batch=args.batch, rate=args.ingest_rate, start=start,
                         end=end, rows=rows)
        threads = run_ingestion(soak, args.senders, port, ingest_token, stats, INGEST, give_up)
        others = [
            threading.Thread(target=predict_loop, args=(port, ingest_token, predict_pool, args.predict_rate, args.predict_rows,
                                                        start, end, stats, stop, tally), daemon=True),
            threading.Thread(target=page_loop, args=(port, cookie, args.page_rate, start, end, stats, stop), daemon=True),
        ]
        audit_thread = threading.Thread(target=audit_loop, args=(port, user_token, start + AUDIT_AT, stats, give_up, watch),
                                        daemon=True)
        for thread in [*others, audit_thread]:
            thread.start()
        scans_enqueued: list[float] = []
        next_scan = start + SCAN_EVERY
        while time.time() < end:
            if time.time() >= next_scan:
                scan_model_queries.delay(model.pk)
                scans_enqueued.append(time.time())
                next_scan += SCAN_EVERY
            time.sleep(max(0.0, min(next_scan, end) - time.time()))
        stop.set()
        if vacuumer:
            vacuumer.stop.set()
        drain_deadline = min(time.time() + 90, cap_deadline - 25)
        for thread in [*threads, *others]:  # requests in flight finish; nothing new starts
            thread.join(max(0.1, drain_deadline - time.time()))
        load_stopped = time.time()
        load_after = os.getloadavg()
        sampler.cpu_frozen = True
        cpu = sampler.cpu_seconds()

        # Drain: one more scan over everything stored; wait for it and for the audit (bounded).
        with psycopg.connect(URL, autocommit=True) as conn:
            newest_at_stop = conn.execute("SELECT COALESCE(MAX(id), 0) FROM monitor_querylog WHERE model_id = %s",
                                          [model.pk]).fetchone()[0]
        _, _, watermark_at_stop, age_at_stop = sampler.samples[-1] if sampler.samples else (0.0, 0, 0, 0.0)
        scan_model_queries.delay(model.pk)
        drain_enqueued = time.time()
        drained_at = None
        while time.time() < drain_deadline:
            if drained_at is None and sampler.samples and sampler.samples[-1][2] >= newest_at_stop:
                drained_at = sampler.samples[-1][0]
            if drained_at is not None and (watch.run_id is None or watch.seen_done):
                break
            time.sleep(0.5)
        give_up.set()
        audit_thread.join(5)
        sampler.stop.set()
        sampler.join(5)
        worker_tail = worker_log.read_text()[-2000:]

    if args.dump:
        args.dump.write_bytes(orjson.dumps({
            "requests": [(t - start, endpoint, ms, outcome) for t, endpoint, ms, outcome in stats.log],
            "scanner": [(t - start, newest, watermark, age) for t, newest, watermark, age in sampler.samples],
            "scans_enqueued": [t - start for t in [*scans_enqueued, drain_enqueued]],
            "scans_done": sorted(sampler.scans.values(), key=lambda scan: scan["at"]),
            "cpu": [(t - start, used) for t, used in sampler.cpu_trace],
        }, option=orjson.OPT_SERIALIZE_NUMPY))

    # Sent vs stored.
    with psycopg.connect(URL, autocommit=True) as conn:
        def stored(request_ids: str) -> int:
            return conn.execute("SELECT count(*) FROM monitor_querylog WHERE model_id = %s AND request_id LIKE %s",
                                [model.pk, request_ids]).fetchone()[0]

        predicted = conn.execute("SELECT count(*) FROM monitor_querylog WHERE model_id = %s AND request_id IS NULL "
                                 "AND client_id LIKE 'pred-%%'", [model.pk]).fetchone()[0]
        checks = [
            ("ingestion, soak", soak.rows_sent, soak.accepted, stored("soak-%")),
            ("ingestion, anchors", capacity.rows_sent + alone.rows_sent, capacity.accepted + alone.accepted,
             stored("anchor-%")),
            ("predict rows", tally.rows_answered, tally.rows_answered, predicted),
        ]
        bloat = dead_tuples(conn)
        findings = conn.execute("SELECT count(*) FROM monitor_detectorfinding WHERE model_id = %s", [model.pk]).fetchone()[0]
        alerts = conn.execute("SELECT count(*) FROM monitor_alert WHERE model_id = %s", [model.pk]).fetchone()[0]

    # Report.
    duration = end - start
    sustained = checks[0][3] / (max(soak.last_ack, start + 1e-9) - start)
    print(f"soak: {duration:.0f} s of mixed load on PostgreSQL + Redis + gunicorn (2 workers) + 1 Celery worker "
          f"(concurrency {args.worker_concurrency}), loopback; model: RandomForest, {N_FEATURES} features, "
          f"{N_CLIENTS} clients; setup {setup_seconds:.0f} s (not timed)")
    print(f"  load: ingestion target {args.ingest_rate:,.0f} queries/s in batches of {args.batch} over {args.senders} "
          f"connections; predict {args.predict_rate:g}/s × {args.predict_rows} rows; pages {args.page_rate:g}/s "
          f"({', '.join(PAGES)}); scan enqueued every {SCAN_EVERY:.0f} s; one audit at +{AUDIT_AT:.0f} s")
    print(f"  machine: {os.cpu_count()} CPUs shared with the load generator; load average before "
          f"{load_before[0]:.2f}, at the end of the load {load_after[0]:.2f}")
    if autovacuum:
        print("  PostgreSQL autovacuum: on")
    elif vacuumer:
        print(f"  PostgreSQL autovacuum is OFF on this server: the soak stood in for it, VACUUM (ANALYZE) of "
              f"{', '.join(VACUUMED)} every 60 s ({len(vacuumer.seconds)} runs, median "
              f"{np.median(vacuumer.seconds) if vacuumer.seconds else float('nan'):.1f} s, max "
              f"{max(vacuumer.seconds, default=float('nan')):.1f} s); --no-vacuum to see the load without it")
    else:
        print("  PostgreSQL autovacuum is OFF on this server and --no-vacuum was given: nothing was vacuumed")
    print(f"  tables at the end: {bloat}")
    print(f"  anchors (ingestion alone, same stack, before the mixed load): unpaced {capacity_rate:,.0f} queries/s "
          f"over {capacity.last_ack - capacity.start:.1f} s; paced at the target: {alone.accepted:,} queries")
    scheduled = int(np.ceil(duration * args.ingest_rate / args.batch))
    print(f"  sustained ingestion: {checks[0][3]:,} queries stored in {soak.last_ack - start:.1f} s = {sustained:,.0f} queries/s "
          f"(target {args.ingest_rate:,.0f}: ratio {sustained / args.ingest_rate:.2f}; ÷ capacity alone "
          f"{sustained / capacity_rate:.2f}); {soak.claimed:,} of {scheduled:,} scheduled batches sent, "
          f"worst start delay behind the clock {soak.max_slip:.2f} s")
    full_minutes = [soak.per_minute[m] / 60 for m in range(int(duration // 60))]
    if full_minutes:
        print(f"  per-minute ingestion: min {min(full_minutes):,.0f} / max {max(full_minutes):,.0f} queries/s "
              f"over {len(full_minutes)} full minutes")
    mixed = load_stopped - start
    print("  CPU during the mixed load, cores busy on average: " + ", ".join(
        f"{role} {seconds / mixed:.2f}" for role, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        if role != "whole machine") + f"; whole machine {cpu['whole machine'] / mixed:.2f} of {os.cpu_count()} "
        f"(the rest is other work on the machine, PostgreSQL/Redis background processes, the kernel)")
    print(f"  {'endpoint':<32} {'count':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  failures")
    order = [INGEST, "POST /predict", *(f"GET {p}" for p in PAGES), "POST /audits", "GET /audits/{id}",
             "anchor: POST /queries unpaced", "anchor: POST /queries paced"]
    for endpoint in order + sorted(set(stats.latency) - set(order)):
        if endpoint not in stats.latency:
            continue
        ok, failed = stats.latency[endpoint], stats.errors[endpoint]
        print(f"  {endpoint:<32} {len(ok) + sum(failed.values()):>7} {sum(failed.values()):>7} {percentile(ok, 50):>8.1f} "
              f"{percentile(ok, 99):>8.1f} {max(ok, default=float('nan')):>8.1f}  "
              f"{', '.join(f'{k}×{v}' for k, v in failed.items()) or '-'}")
    alone_p99, mixed_p99 = percentile(stats.latency["anchor: POST /queries paced"], 99), percentile(stats.latency[INGEST], 99)
    print(f"  ratio POST /queries p99 mixed ÷ alone at the same rate: {mixed_p99 / alone_p99:.2f} "
          f"({mixed_p99:.0f} ms vs {alone_p99:.0f} ms)")

    passed = all(sent == stored_ for _, sent, _, stored_ in checks)
    for name, sent, acknowledged, stored_ in checks:
        print(f"  sent vs stored, {name:<19}: sent {sent:>10,}  acknowledged {acknowledged:>10,}  stored {stored_:>10,}"
              f"  {'equal' if sent == stored_ else 'DIFFERENT'}")
    print(f"  duplicates reported {soak.duplicates + capacity.duplicates + alone.duplicates} (retried batches); "
          f"unacknowledged batches {soak.unacknowledged + capacity.unacknowledged + alone.unacknowledged}; "
          f"predict rows in failed calls {tally.rows_failed}")

    print_worker(sampler, scans_enqueued, drain_enqueued, start, load_stopped, newest_at_stop, watermark_at_stop,
                 age_at_stop, drained_at, findings, alerts)
    print_audit(watch)
    print(f"  wall time {time.time() - wall_start:.0f} s")
    print(f"{'PASS' if passed else 'FAIL'}: queries sent {'=' if passed else '≠'} queries stored")
    if not passed:
        print(worker_tail, file=sys.stderr)
    return 0 if passed else 1


def print_worker(sampler: Sampler, enqueued: list[float], drain_enqueued: float, start: float, load_stopped: float,
                 newest_at_stop: int, watermark_at_stop: int, age_at_stop: float, drained_at: float | None,
                 findings: int, alerts: int) -> None:
    from datetime import datetime

    done = sorted((datetime.fromisoformat(at).timestamp(), scan) for at, scan in sampler.scans.items())
    done = [(t, scan) for t, scan in done if t >= start]
    times: list[float] = []
    for when in [*enqueued, drain_enqueued]:
        finished = next((t for t, _ in done if t >= when), None)
        if finished is not None and all(not when < e <= finished for e in [*enqueued, drain_enqueued] if e != when):
            times.append(finished - when)
    scanned = sum(scan.get("scanned", 0) for _, scan in done)
    during = [s for s in sampler.samples if s[0] <= load_stopped]
    worst = max(during, key=lambda s: s[3], default=(0, 0, 0, 0.0))
    worst_rows = max((s[1] - s[2] for s in during), default=0)
    print(f"  worker: {len(enqueued)} scans enqueued during the load + 1 at the end; {len(done)} completed, "
          f"{scanned:,} queries scanned, {findings} findings, {alerts} alerts")
    if times:
        print(f"  scan enqueue → done: median {np.median(times):.1f} s, max {max(times):.1f} s "
              f"({', '.join(f'{t:.1f}' for t in times)})")
    print(f"  scanner lag during the load: max {worst[3]:.0f} s (age of the oldest unscanned query), "
          f"max {worst_rows:,} ids behind; at the end of the load {age_at_stop:.0f} s, "
          f"{newest_at_stop - watermark_at_stop:,} ids behind")
    if drained_at is not None:
        print(f"  drain: the final scan reached the last query {drained_at - drain_enqueued:.1f} s after it was enqueued")
    else:
        print("  drain: the final scan did NOT reach the last query within the time allowed")


def print_audit(watch: AuditWatch) -> None:
    from datetime import datetime

    if watch.run_id is None:
        print("  audit: the request failed")
        return
    last = watch.last
    if last.get("status") not in ("done", "failed"):
        print(f"  audit #{watch.run_id}: not finished ({last.get('status')}, {last.get('progress')} %, {last.get('step')})")
        return

    def ts(key: str) -> float:
        return datetime.fromisoformat(last[key].replace("Z", "+00:00")).timestamp()

    head = ((last.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
    print(f"  audit #{watch.run_id}: {last['status']}; queued {ts('started_at') - watch.requested:.1f} s, "
          f"ran {ts('finished_at') - ts('started_at'):.1f} s, request → finished {ts('finished_at') - watch.requested:.1f} s "
          f"(seen by polling after {watch.seen_done - watch.requested:.1f} s)"
          + (f"; headline TPR@1%FPR {head['value']:.2%} ({head.get('attack')})" if head else f"; {last.get('error')}"))


if __name__ == "__main__":
    raise SystemExit(main())
