"""A small, real heartbeat receiver for tests: HTTP on 127.0.0.1, in a thread.

It does what the contract asks of a receiver (DESIGN.md section 2), no more:
dedupes by ``heartbeat_id`` (same id and body → ``duplicate``; same id and a
different body → 409), adds the counts of each new heartbeat into per-day totals,
and answers with ``payload_sha256``. It also records what a test wants to check:
every TCP connection accepted, every request (headers and body), and it can be
scripted to answer 503/429/410... (any method: ``outbox forget`` sends a DELETE), to hold
answers until released, or to go down (stop listening) and come back on the same port.
Its totals have the shape of every other (:mod:`tests.support.totals`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.totals import DayTotals, Totals, payload_day_totals, payload_totals

PATH = "/api/instances/heartbeat"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    """One forced answer, used instead of the normal handling for the next request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the crash tests do that) is not the receiver's error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self.receiver.lock:
            self.receiver.connections += 1
            self.receiver.open_sockets.add(conn)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # quiet
        return None

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, headers, answer = self.server.receiver.handle(
            Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_GET = do_DELETE = _answer


class Receiver:
    """``with Receiver() as r:`` → ``r.url``; ``r.totals()``, ``r.requests``, ``r.connections``."""

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.port = port
        self.connections = 0
        self.requests: list[Request] = []
        self.script: deque[Scripted] = deque()
        #: Set by default; clear it to hold every answer until it is set again.
        self.gate = threading.Event()
        self.gate.set()
        #: Set whenever a request arrives (tests wait on it).
        self.arrived = threading.Event()
        self.stored: dict[str, bytes] = {}  # heartbeat_id -> body, in arrival order
        self.open_sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------

    def start(self) -> Receiver:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the receiver is down); :meth:`start` brings it back, same port."""
        if self._server is not None:
            self.gate.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            # Keep-alive connections outlive the listening socket: a receiver that is
            # down answers nothing, so cut them too.
            with self.lock:
                sockets, self.open_sockets = self.open_sockets, set()
            for conn in sockets:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    # -- the receiving service ----------------------------------------------------------

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(req)
            forced = self.script.popleft() if self.script else None
        self.arrived.set()
        self.gate.wait(30)
        if forced is not None:
            return forced.status, forced.headers, forced.body
        if req.method != "POST":
            return 405, {}, b""
        # A request through a proxy carries the absolute URL: compare the path only.
        if urlsplit(req.path).path != PATH:
            return 404, {}, b""
        try:
            payload = json.loads(req.body)
            hid = payload["heartbeat_id"]
            if not isinstance(hid, str) or payload.get("schema_version") != 1:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return 400, {"Content-Type": "application/json"}, b'{"error": "not schema v1"}'
        digest = hashlib.sha256(req.body).hexdigest()
        with self.lock:
            seen = self.stored.get(hid)
            if seen is None:
                self.stored[hid] = req.body
                status = "accepted"
            elif seen == req.body:
                status = "duplicate"
            else:
                return 409, {"Content-Type": "application/json"}, b'{"error": "conflict"}'
        answer = json.dumps({"status": status, "payload_sha256": digest}).encode()
        return 200, {"Content-Type": "application/json"}, answer

    # -- what a test checks -------------------------------------------------------------

    def payloads(self) -> list[dict[str, Any]]:
        """Each stored heartbeat once, decoded, in arrival order."""
        with self.lock:
            return [json.loads(b) for b in self.stored.values()]

    def totals(self) -> Totals:
        """Counted usage per (kind, name), each heartbeat counted once."""
        return payload_totals(self.payloads())

    def day_totals(self) -> DayTotals:
        """Counted usage per (UTC day, kind, name), from the payloads' ``days``."""
        return payload_day_totals(self.payloads())

    def posts(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]
