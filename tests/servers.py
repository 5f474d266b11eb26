"""Real local servers the tests talk to: an SMTP server (aiosmtpd) and an HTTP server standing in for Slack."""
from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections import deque
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    """aiosmtpd on loopback; `stop()` and `start()` on the same port simulate an outage."""

    def __init__(self, *, refuse: set[str] | None = None) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self.refuse = refuse or set()
        self._controller = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)

        server = self

        class Handler:
            async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):  # noqa: N802
                if address in server.refuse:
                    return "550 5.1.1 no such user"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802
                message = message_from_bytes(envelope.content, policy=policy.default)
                message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
                server.messages.append(message)
                return "250 Message accepted"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when the sender hung up before the answer (it timed out, or was killed): tests expect that."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class WebhookServer:
    """An HTTP server that records POSTs and answers from a script of status codes (then 200).

    `requests` holds the messages it accepted (answered 200); `received` every POST as it arrived, with its
    headers, including ones still being answered or that the sender gave up on.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.received: list[dict] = []
        self.script: deque[tuple[int, str]] = deque()
        self.delay = 0.0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, text = recorder.script.popleft() if recorder.script else (200, "ok")
                recorder.received.append({"path": self.path, "json": json.loads(body), "headers": dict(self.headers),
                                          "status": status, "raw": body})
                if 200 <= status < 300:
                    recorder.requests.append({"path": self.path, "json": json.loads(body), "headers": dict(self.headers),
                                              "raw": body})
                if recorder.delay:
                    threading.Event().wait(recorder.delay)
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, *responses: tuple[int, str]) -> None:
        self.script.extend(responses)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ModelServer:
    """A team's model service on loopback: POST {"instances"} -> {"probabilities"}; can be slow or redirect."""

    def __init__(self, *, delay: float = 0.0, redirect_to: str | None = None) -> None:
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                recorder.requests.append(body)
                if delay:
                    threading.Event().wait(delay)
                if redirect_to:
                    self.send_response(307)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps({"probabilities": [[0.25, 0.75] for _ in body["instances"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/predict"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
