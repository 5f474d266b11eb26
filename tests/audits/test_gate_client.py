"""tools/gate_client.py, the CI side of the privacy gate (issue 28), run as CI runs it: `python -I -S` (isolated, no
site-packages, so the standard library is all it has). First against the real server and a real Celery worker;
then its own behaviour against a scripted stand-in for the candidate API: a forgotten token, retries without a
second upload, the server's errors and details, a timeout, and the token never in its output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier

from tests.factories import make_audited_model, user_token
from tests.servers import free_port
from tests.workers import Worker, own_queue

CLIENT = Path(__file__).resolve().parents[2] / "tools" / "gate_client.py"
TOKEN = "mim_cI7oken-4f9a2b7c1d3e5f60718293a4b5c6d7e8"
REPORT_KINDS = ("junit", "sarif", "summary", "json")


def run_client(*args: str, token: str | None = TOKEN, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The client as a CI step runs it, the token from MONITOR_TOKEN; its output never holds the token."""
    env = {key: value for key, value in os.environ.items() if key != "MONITOR_TOKEN"}
    if token is not None:
        env["MONITOR_TOKEN"] = token
    result = subprocess.run([sys.executable, "-I", "-S", str(CLIENT), *args], env=env, capture_output=True,
                            text=True, encoding="utf-8", timeout=timeout)
    if token and token.strip():
        assert token.strip() not in result.stdout + result.stderr
    return result


def report_options(folder: Path) -> list[str]:
    return [f"--{kind}={folder / f'gate.{kind}'}" for kind in REPORT_KINDS]


# The real server and a real worker ---------------------------------------------------------------------------


def forest_file(model, folder: Path, *, min_samples_leaf: int) -> Path:
    """A forest trained on the model's members, as the team's next release would be."""
    members = model.datasets.get(kind="members").load()
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=min_samples_leaf, random_state=0)
    path = folder / f"candidate-leaf-{min_samples_leaf}.skops"
    path.write_bytes(sio.dumps(forest.fit(members.X, np.asarray(model.class_labels)[members.y])))
    return path


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_leakier_candidate_fails_the_gate_through_the_real_api_and_a_real_worker(live_server, tmp_path):
    model = make_audited_model(slug="gated-ci", n=400, estimator=RandomForestClassifier(
        n_estimators=50, min_samples_leaf=20, random_state=0))
    artifact = forest_file(model, tmp_path, min_samples_leaf=1)
    token = user_token(role="security")
    with own_queue() as queue:
        worker = Worker(queue)
        try:
            result = run_client("--url", live_server.url, "--model", model.slug, "--artifact", str(artifact),
                                *report_options(tmp_path), "--poll", "0.5", "--timeout", "600", token=token,
                                timeout=660)
        finally:
            worker_output = worker.stop()
    assert result.returncode == 1, result.stderr + worker_output
    assert "Traceback" not in worker_output, worker_output
    summary = (tmp_path / "gate.summary").read_text(encoding="utf-8")
    assert result.stdout == summary and "❌ fail" in summary
    assert f"verdict: fail (exit 1) — {live_server.url}/models/{model.slug}/candidates/" in result.stderr
    progress = [line for line in result.stderr.splitlines() if " %  " in line]
    assert progress and len(progress) == len(set(progress)), result.stderr  # one line per change, not per poll
    report = json.loads((tmp_path / "gate.json").read_text())
    assert report["verdict"] == "fail" and report["model"] == model.slug
    assert report["artifact_name"] == artifact.name
    sarif = json.loads((tmp_path / "gate.sarif").read_text())
    assert any(r["ruleId"] == "MIA-GATE-LEAKAGE" and r["level"] == "error" for r in sarif["runs"][0]["results"])
    assert 'failures="0"' not in (tmp_path / "gate.junit").read_text()


@pytest.mark.django_db(transaction=True)
def test_the_real_api_refuses_a_candidate_of_other_features_naming_the_field(live_server, tmp_path):
    model = make_audited_model(slug="gated-ci", n=200)
    rng = np.random.default_rng(0)
    other = tmp_path / "other.skops"
    other.write_bytes(sio.dumps(RandomForestClassifier(5).fit(rng.normal(size=(50, 3)), rng.integers(0, 2, 50))))
    result = run_client("--url", live_server.url, "--model", model.slug, "--artifact", str(other),
                        token=user_token(role="security"))
    assert result.returncode == 2 and "400" in result.stderr, result.stderr
    assert "artifact:" in result.stderr and "3 features" in result.stderr, result.stderr
    assert result.stdout == ""


# The client's own behaviour, against a scripted stand-in for the candidate API ---------------------------------


def candidate(status: str, progress: int = 0, step: str = "", *, verdict: str = "", error: str = "") -> dict:
    return {"id": 7, "model": "credit", "status": status, "progress": progress, "step": step, "error": error,
            "verdict": verdict, "exit_code": {"pass": 0, "warn": 0, "fail": 1, "undecided": 2}.get(verdict),
            "artifact_name": "candidate.skops", "report": None, "promoted_version": None}


ACCEPTED = (202, {"id": 7, "model": "credit", "status": "queued", "url": "/api/v1/models/credit/candidates/7",
                  "page": "/models/credit/candidates/7"})
SUMMARY = "### Privacy gate for `credit`: ✅ pass\n\n- the candidate leaks no more than production at any target\n"


class FakeMonitor:
    """The candidate API's contract on loopback. POSTs are answered from `uploads` (then 202), each GET of the
    candidate from `states` (the last one repeats); every request is recorded with its headers and body."""

    def __init__(self, *, uploads: tuple | list = (), states: tuple | list = ()) -> None:
        self.uploads, self.states = deque(uploads), deque(states)
        self.requests: list[dict[str, Any]] = []
        self.reports = {kind: f"{kind} report of candidate 7\n" for kind in REPORT_KINDS} | {"summary": SUMMARY}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: Any, headers: dict | None = None) -> None:
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8" if isinstance(body, str)
                                 else "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                      "body": body})

            def do_POST(self) -> None:  # noqa: N802
                self.record()
                if self.path != "/api/v1/models/credit/candidates":
                    return self.answer(404, {"error": "no such model", "details": []})
                self.answer(*(fake.uploads.popleft() if fake.uploads else ACCEPTED))

            def do_GET(self) -> None:  # noqa: N802
                self.record()
                prefix = "/api/v1/models/credit/candidates/7"
                if self.path.startswith(f"{prefix}/reports/"):
                    return self.answer(200, fake.reports[self.path.rsplit("/", 1)[1]])
                if self.path != prefix:
                    return self.answer(404, {"error": "no such candidate", "details": []})
                state = fake.states.popleft() if len(fake.states) > 1 else fake.states[0]
                if isinstance(state, tuple):
                    return self.answer(*state)
                self.answer(200, state)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def monitor() -> Iterator[Any]:
    servers: list[FakeMonitor] = []

    def start(**script: Any) -> FakeMonitor:
        servers.append(FakeMonitor(**script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "candidate.skops"
    path.write_bytes(b"PK\x03\x04 a candidate model\x00\xff")
    return path


def gate(server: FakeMonitor, artifact: Path, *extra: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    return run_client("--url", server.url, "--model", "credit", "--artifact", str(artifact), "--poll", "0.05",
                      "--timeout", "30", *extra, token=token)


@pytest.mark.parametrize("environment", [None, "", "  \n"], ids=["unset", "empty", "blank"])
def test_a_forgotten_token_exits_2_naming_monitor_token_before_any_request(monitor, artifact, environment):
    server = monitor(states=[candidate("done", 100, verdict="pass")])
    result = gate(server, artifact, token=environment)
    assert result.returncode == 2
    assert "no API token" in result.stderr and "MONITOR_TOKEN" in result.stderr, result.stderr
    assert server.requests == []


def test_a_passing_candidate_writes_the_reports_prints_the_summary_and_exits_0(monitor, artifact, tmp_path):
    server = monitor(states=[candidate("queued"), candidate("running", 10, "loading the candidate"),
                             candidate("running", 42, "training reference models…"),
                             candidate("running", 42, "training reference models…"),
                             candidate("done", 100, "verdict: pass", verdict="pass")])
    members = tmp_path / "members.csv"
    members.write_text("record,age,income,label\nr-1,41,5200,yes\n")
    result = gate(server, artifact, "--members", str(members), "--id-column", "record", "--alpha", "0.01",
                  *report_options(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == SUMMARY
    for kind in REPORT_KINDS:
        assert (tmp_path / f"gate.{kind}").read_text(encoding="utf-8") == server.reports[kind]
    lines = result.stderr.splitlines()
    assert lines.count("  42 %  training reference models…") == 1, result.stderr  # once, however often polled
    assert "   0 %  queued" in lines and "  10 %  loading the candidate" in lines
    assert lines[-1] == f"verdict: pass (exit 0) — {server.url}/models/credit/candidates/7"

    (upload,) = server.posts()
    assert upload["headers"]["Authorization"] == f"Bearer {TOKEN}"
    form = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {upload['headers']['Content-Type']}\r\n\r\n".encode() + upload["body"])
    parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
    assert parts["artifact"].get_filename() == "candidate.skops"
    assert parts["artifact"].get_payload(decode=True) == artifact.read_bytes()
    assert parts["members"].get_payload(decode=True) == members.read_bytes()
    assert parts["alpha"].get_content().strip() == "0.01" and parts["id_column"].get_content().strip() == "record"


@pytest.mark.parametrize(("verdict", "code"), [("warn", 0), ("fail", 1), ("undecided", 2)])
def test_each_verdict_exits_with_its_code_and_still_writes_the_reports(monitor, artifact, tmp_path, verdict, code):
    server = monitor(states=[candidate("done", 100, verdict=verdict)])
    result = gate(server, artifact, *report_options(tmp_path))
    assert result.returncode == code, result.stderr
    assert f"verdict: {verdict} (exit {code})" in result.stderr
    assert all((tmp_path / f"gate.{kind}").exists() for kind in REPORT_KINDS)


def test_a_candidate_that_could_not_be_gated_exits_2_with_the_servers_reason(monitor, artifact):
    server = monitor(states=[candidate("running", 5), candidate(
        "failed", 5, "could not be gated", error="model: credit moved from version 3 to 4; submit it again")])
    result = gate(server, artifact)
    assert result.returncode == 2 and result.stdout == ""
    assert "could not be gated: model: credit moved from version 3 to 4" in result.stderr


def test_a_503_is_retried_and_the_candidate_is_uploaded_once_it_is_accepted(monitor, artifact):
    busy = {"error": "the service is restarting", "details": []}
    server = monitor(uploads=[(503, busy, {"Retry-After": "0"}), ACCEPTED],
                     states=[candidate("running", 30), (503, busy, {"Retry-After": "0"}), (502, "bad gateway"),
                             candidate("done", 100, verdict="pass")])
    result = gate(server, artifact)
    assert result.returncode == 0, result.stderr
    assert [r["method"] for r in server.requests[:2]] == ["POST", "POST"]
    assert len(server.posts()) == 2  # the refused one and the accepted one; the polls' 503 and 502 re-send nothing
    assert result.stderr.count("trying again") == 3
    # The retried upload carries the first one's Idempotency-Key, so a server that took it answers with that candidate.
    keys = {post["headers"].get("Idempotency-Key") for post in server.posts()}
    assert len(keys) == 1 and len(next(iter(keys)) or "") == 36
    again = monitor(uploads=[ACCEPTED], states=[candidate("done", 100, verdict="pass")])
    assert gate(again, artifact).returncode == 0
    assert again.posts()[0]["headers"]["Idempotency-Key"] not in keys  # a new run, a new key


def test_a_refused_upload_prints_the_servers_error_and_each_detail_and_is_not_retried(monitor, artifact):
    refused = (400, {"error": "the candidate cannot be gated", "details": [
        {"index": None, "field": "artifact", "message": "the candidate takes 3 features; credit has 4"},
        {"index": 12, "field": "members", "message": "income is not a number"}]})
    server = monitor(uploads=[refused])
    result = gate(server, artifact)
    assert result.returncode == 2 and result.stdout == ""
    assert "400 Bad Request: the candidate cannot be gated" in result.stderr
    assert "  - artifact: the candidate takes 3 features; credit has 4" in result.stderr
    assert "  - [12] members: income is not a number" in result.stderr
    assert len(server.requests) == 1


def test_a_refused_token_says_why_and_never_shows_the_token_even_when_the_answer_repeats_it(monitor, artifact):
    server = monitor(uploads=[(401, {"error": f"unknown token {TOKEN}", "details": []})])
    result = gate(server, artifact)  # run_client asserts the token is nowhere in the output
    assert result.returncode == 2
    assert "401 Unauthorized: unknown token ***" in result.stderr and "MONITOR_TOKEN" in result.stderr


def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(monitor, artifact):
    server = monitor(uploads=[(302, "", {"Location": "http://127.0.0.1:9/elsewhere"})])
    result = gate(server, artifact)
    assert result.returncode == 2 and "redirects (302) to http://127.0.0.1:9/elsewhere" in result.stderr
    assert len(server.requests) == 1


def test_a_gate_that_outlasts_the_timeout_exits_2_and_says_where_it_goes_on(monitor, artifact):
    server = monitor(states=[candidate("running", 42, "training reference models…")])
    started = time.monotonic()
    result = run_client("--url", server.url, "--model", "credit", "--artifact", str(artifact), "--poll", "0.2",
                        "--timeout", "2")
    assert result.returncode == 2 and result.stdout == ""
    assert time.monotonic() - started < 15  # two seconds of waiting plus the interpreter's start
    assert "no verdict within --timeout (running, 42 %)" in result.stderr
    assert f"the gate goes on on the server: {server.url}/models/credit/candidates/7" in result.stderr
    assert len(server.posts()) == 1


def test_a_monitor_that_cannot_be_reached_is_retried_until_the_timeout_then_exits_2(artifact):
    started = time.monotonic()
    result = run_client("--url", f"http://127.0.0.1:{free_port()}", "--model", "credit", "--artifact", str(artifact),
                        "--timeout", "3")
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    assert "connection refused" in result.stderr and "trying again" in result.stderr, result.stderr


def test_bad_input_exits_2_before_any_request(monitor, artifact, tmp_path):
    server = monitor(states=[candidate("done", 100, verdict="pass")])
    for extra, phrase in ((["--alpha", "0.7"], "--alpha 0.7"), (["--sarif", str(tmp_path / "no" / "g.sarif")], "does not exist")):
        result = gate(server, artifact, *extra)
        assert result.returncode == 2 and phrase in result.stderr, result.stderr
    result = gate(server, tmp_path / "absent.skops")
    assert result.returncode == 2 and "no such file" in result.stderr
    assert server.requests == []
