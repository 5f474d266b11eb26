#!/usr/bin/env python3
"""Gate a release in CI: upload a candidate model to the membership-inference monitor, wait for its privacy gate,
write the reports and exit with the verdict. Standard library only: copy this one file into a model's repository.

    export MONITOR_TOKEN=...   # a personal API token of role admin or security (keep it in a CI secret)
    python gate_client.py --url https://monitor.example.com --model credit --artifact candidate.skops \\
        [--members members.csv [--id-column ID]] [--alpha 0.05] [--junit gate.xml] [--sarif gate.sarif] \\
        [--summary gate.md] [--json gate.json] [--timeout 3600] [--poll 5] [--token TOKEN]

The artifact is a skops file, an XGBoost model (.json / .ubj) or a LightGBM text model (.txt) for the same features
and classes as the registered model; --members is the candidate's own members CSV when it trained on new data.
The client uploads once (POST /api/v1/models/{slug}/candidates), shows the progress on stderr, writes the reports
asked for, prints the Markdown summary on stdout, and exits:

    0  pass, or warn (the candidate reads worse than production, within noise)
    1  fail (it leaks more than production with confidence, or breaks the model's policy limits)
    2  could not decide: the audits were too weak, the candidate could not be gated, the wait passed --timeout,
       bad input, a refused token, or a server that could not be reached

Connection refused or reset, timeouts and 502 / 503 / 504 (and 429) are retried a few times with backoff. The upload
carries an Idempotency-Key (a new UUID per run): sent again after a lost answer, it gets the candidate the server
stored the first time, gated once; once accepted (202) it is never sent again. The token is read from --token or
MONITOR_TOKEN and is never printed.
"""
from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NoReturn

EXIT_CODES = {"pass": 0, "warn": 0, "fail": 1, "undecided": 2}
COULD_NOT_DECIDE = 2
REPORTS = {"junit": "JUnit XML", "sarif": "SARIF 2.1.0", "summary": "the Markdown summary", "json": "the JSON report"}
RETRY_STATUSES = {429, 502, 503, 504}
ATTEMPTS = 5  # the first try and four retries, waiting 1, 2, 4, 8 s (or what Retry-After asks, up to a minute)
MAX_WAIT = 60.0
REQUEST_TIMEOUT = 120.0  # one request's socket timeout; --timeout bounds the whole run
# Connection failures where the server cannot have taken the request, or dropped it: worth another try.
DROPPED = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
           http.client.RemoteDisconnected)


class GateClientError(Exception):
    """Why the client cannot give a verdict (exit 2): a sentence, and the server's details as lines."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.details = message, details or []


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token to wherever it points: answer it as an error naming the new address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Monitor:
    """The monitor's candidate API at `base` (scheme, host and any path prefix), with one bearer token."""

    def __init__(self, base: str, token: str, *, deadline: float) -> None:
        self.base, self.token, self.deadline = base.rstrip("/"), token, deadline
        self.opener = urllib.request.build_opener(NoRedirects())

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None,
             extra_headers: dict[str, str] | None = None) -> bytes:
        """The answer's body of a 2xx; transient failures retried with backoff within the deadline (the upload is
        safe to send again: it carries an Idempotency-Key)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json, text/plain",
                   "User-Agent": "mi-monitor-gate-client/1", **(extra_headers or {})}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(1, ATTEMPTS + 1):
            # checked_input allows http and https only
            request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)  # noqa: S310
            try:
                with self.opener.open(request, timeout=max(1.0, min(REQUEST_TIMEOUT, self.remaining()))) as answer:
                    data: bytes = answer.read()
                    return data
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                if exc.code not in RETRY_STATUSES or attempt == ATTEMPTS:
                    raise refusal(method, path, exc.code, exc.reason, payload, exc.headers.get("Location")) from None
                problem, wait = f"{exc.code} {exc.reason}", retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                timed_out = isinstance(reason, (socket.timeout, TimeoutError))
                if not (isinstance(reason, DROPPED) or timed_out) or attempt == ATTEMPTS:
                    raise GateClientError(f"{method} {self.base}{path}: {describe(reason)}") from None
                problem, wait = describe(reason), None
            wait = min(MAX_WAIT, 2.0 ** (attempt - 1) if wait is None else wait)
            if wait >= self.remaining():
                raise GateClientError(f"{method} {self.base}{path}: {problem}, and --timeout passes before another try")
            note(f"{method} {path}: {problem}; trying again in {wait:.0f} s ({attempt}/{ATTEMPTS - 1})")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def json_call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        payload = self.call(method, path, **kwargs)
        try:
            answer = json.loads(payload)
        except ValueError:
            raise GateClientError(f"{method} {self.base}{path} answered something that is not JSON: "
                                  f"{payload[:200].decode(errors='replace')!r}") from None
        if not isinstance(answer, dict):
            raise GateClientError(f"{method} {self.base}{path} answered {type(answer).__name__}, not an object")
        return answer


def describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the monitor running at that address?)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "no answer in time"
    return str(reason) or type(reason).__name__


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not worth a parser here: then the usual backoff)."""
    return float(value) if value and value.strip().isdigit() else None


def refusal(method: str, path: str, status: int, reason: str, payload: bytes, location: str | None) -> GateClientError:
    """The server's `{"error", "details": [{"index", "field", "message"}]}` as a sentence and lines."""
    if 300 <= status < 400:
        return GateClientError(f"{method} {path}: the server redirects ({status}) to {location}; give --url the "
                               "address it redirects to (the token is not sent after a redirect)")
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        details = [" ".join(part for part in (
            f"[{d.get('index')}]" if d.get("index") is not None else "",
            f"{d['field']}:" if d.get("field") else "", str(d.get("message", ""))) if part)
            for d in body.get("details") or [] if isinstance(d, dict)]
        message = str(body["error"])
    else:
        details, message = [], payload[:200].decode(errors="replace").strip() or reason
    hint = {401: " (the token from --token or MONITOR_TOKEN was refused)",
            403: " (gating needs a token of role admin or security)"}.get(status, "")
    return GateClientError(f"{method} {path}: {status} {reason}: {message}{hint}", details)


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type (names quoted as browsers do: \" CR LF percent-encoded)."""
    boundary = f"gate-{uuid.uuid4().hex}"

    def quoted(name: str) -> str:
        return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")

    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted(path.name)}"'
                     f"\r\nContent-Type: {kind}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def stop(error: GateClientError, token: str) -> NoReturn:
    """Say why there is no verdict (the token blanked out, should a message ever carry it) and exit 2."""
    for line in (f"error: {error.message}", *(f"  - {detail}" for detail in error.details)):
        note(line.replace(token, "***") if token else line)
    raise SystemExit(COULD_NOT_DECIDE)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the monitor, e.g. https://monitor.example.com")
    parser.add_argument("--token", help="API token (admin or security); default: the MONITOR_TOKEN variable")
    parser.add_argument("--model", required=True, help="the registered model's slug")
    parser.add_argument("--artifact", required=True, type=Path, help="the candidate: skops, XGBoost .json/.ubj, "
                                                                     "LightGBM .txt")
    parser.add_argument("--members", type=Path, help="the candidate's own members CSV, when it trained on new data")
    parser.add_argument("--id-column", help="with --members: the name of its record id column, if it has one")
    parser.add_argument("--alpha", type=float, help="significance level (default: the model's policy, else 0.05)")
    for kind, what in REPORTS.items():
        parser.add_argument(f"--{kind}", type=Path, metavar="PATH", help=f"write {what} here")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up (exit 2) after this many seconds "
                                                                      "(default 3600)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between progress checks (default 5)")
    return parser.parse_args(argv)


def checked_input(args: argparse.Namespace) -> tuple[str, dict[str, Path]]:
    """The token and the report paths, or GateClientError before anything is sent."""
    token = (args.token if args.token is not None else os.environ.get("MONITOR_TOKEN", "")).strip()
    if not token:
        raise GateClientError("no API token: set the MONITOR_TOKEN environment variable (from a CI secret) or give "
                              "--token; an admin issues one with `manage.py issue_token --user NAME --role security`")
    if not all(33 <= ord(char) < 127 for char in token):
        raise GateClientError("the API token holds a space, a line break or another character no token has: "
                              "check the secret it comes from")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise GateClientError(f"--url {args.url!r}: give the monitor's address, e.g. https://monitor.example.com")
    for option, path in (("--artifact", args.artifact), ("--members", args.members)):
        if path is not None and not path.is_file():
            raise GateClientError(f"{option} {path}: no such file")
    if args.alpha is not None and not 0 < args.alpha < 0.5:
        raise GateClientError(f"--alpha {args.alpha}: give a significance level between 0 and 0.5")
    if args.timeout <= 0 or args.poll <= 0:
        raise GateClientError("--timeout and --poll are positive numbers of seconds")
    outputs = {kind: getattr(args, kind) for kind in REPORTS if getattr(args, kind) is not None}
    for kind, path in outputs.items():
        if not path.parent.is_dir():
            raise GateClientError(f"--{kind} {path}: the folder {path.parent} does not exist")
    if url.scheme == "http" and url.hostname not in ("localhost", "127.0.0.1", "::1"):
        note(f"warning: {url.hostname} is reached over plain http: the token crosses the network unencrypted")
    return token, outputs


def wait_for_verdict(monitor: Monitor, path: str, *, poll: float, page: str) -> dict[str, Any]:
    """Poll the candidate until it is done or failed, one progress line on stderr per change."""
    shown: tuple[Any, ...] = ()
    while True:
        candidate = monitor.json_call("GET", path)
        status = str(candidate.get("status", ""))
        progress = candidate.get("progress") if isinstance(candidate.get("progress"), int) else 0
        line = (status, progress, candidate.get("step"))
        if line != shown:
            note(f"{progress:4d} %  {candidate.get('step') or status}")
            shown = line
        if status in ("done", "failed"):
            return candidate
        if monitor.remaining() <= 0:
            raise GateClientError(f"no verdict within --timeout ({status}, {progress} %); the gate goes on on the "
                                  f"server: {page}")
        time.sleep(max(0.0, min(poll, monitor.remaining())))


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    token = ""
    try:
        token, outputs = checked_input(args)
        monitor = Monitor(args.url, token, deadline=time.monotonic() + args.timeout)
        slug = urllib.parse.quote(args.model, safe="")
        fields = {**({"alpha": repr(args.alpha)} if args.alpha is not None else {}),
                  **({"id_column": args.id_column} if args.id_column else {})}
        files = {"artifact": args.artifact, **({"members": args.members} if args.members else {})}
        body, content_type = multipart(fields, files)
        note(f"uploading {args.artifact.name} ({len(body):,} bytes) as a candidate for {args.model} to {monitor.base}")
        accepted = monitor.json_call("POST", f"/api/v1/models/{slug}/candidates", body=body,
                                     content_type=content_type, extra_headers={"Idempotency-Key": str(uuid.uuid4())})
        if not isinstance(accepted.get("id"), int):
            raise GateClientError(f"the server accepted the upload but named no candidate id: {accepted!r:.200}")
        # From here on only GETs: the candidate is on the server, whatever happens to this process.
        path = f"/api/v1/models/{slug}/candidates/{accepted['id']}"
        page = (urllib.parse.urljoin(monitor.base + "/", str(accepted["page"]).lstrip("/")) if accepted.get("page")
                else f"{monitor.base}/models/{slug}/candidates/{accepted['id']}/")
        note(f"candidate #{accepted['id']} {accepted.get('status', 'queued')}: {page}")
        candidate = wait_for_verdict(monitor, path, poll=args.poll, page=page)
        if candidate["status"] == "failed":
            raise GateClientError(f"the candidate could not be gated: {candidate.get('error') or 'no reason given'}")
        verdict = str(candidate.get("verdict") or "")
        if verdict not in EXIT_CODES:
            raise GateClientError(f"the server finished with no verdict I know ({verdict!r}): {page}")
        for kind, target in outputs.items():
            target.write_bytes(monitor.call("GET", f"{path}/reports/{kind}"))
        summary = outputs["summary"].read_bytes() if "summary" in outputs else monitor.call(
            "GET", f"{path}/reports/summary")
    except GateClientError as error:
        stop(error, token)
    except OSError as exc:  # a file that cannot be read or written
        stop(GateClientError(str(exc)), token)
    sys.stdout.flush()
    sys.stdout.buffer.write(summary)  # the server's UTF-8 as it is, whatever this terminal's locale
    sys.stdout.buffer.flush()
    code = EXIT_CODES[verdict]
    note(f"verdict: {verdict} (exit {code}) — {page}")
    return code


if __name__ == "__main__":
    sys.exit(main())
