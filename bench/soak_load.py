"""The soak's clients: keep-alive HTTP connections that time every request into Stats, the browser login, and the
load generators (paced ingestion with retries under the same request ids, predict calls, dashboard pages, one
audit polled until it finishes)."""
from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from urllib.parse import urlencode

import numpy as np
import orjson
from soak_stack import SLUG

PREDICT_CLIENTS = 20
PAGES = ("/", f"/models/{SLUG}/", "/alerts/")


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
