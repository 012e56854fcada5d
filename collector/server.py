"""Serving the collector with uvicorn on a socket we bind ourselves, slow clients cut.

Binding first lets ``--port 0`` (and tests) learn the real port before the
first request, and lets the CLI print where it lists. uvicorn runs with its
access log off (its lines carry the client's address); :class:`collector.app.AccessLog`
writes ours without it.

uvicorn has no deadline for reading a request (a client sending one header line or
one body byte every few seconds stays connected for ever) and accepts every
connection. :class:`GuardedProtocol`, its HTTP protocol with three guards, does:

* **header deadline**: a connection must deliver a request's complete headers within
  ``header_timeout`` seconds of opening (or of the previous response); an idle or
  trickling connection is closed (with ``408`` once a request has begun);
* **body deadline**: the body must be complete within ``body_timeout`` seconds of the
  headers (``408`` and closed otherwise), whether or not the app reads it;
* **connection bound**: past ``max_connections`` open connections a new one is
  answered ``503`` (``Retry-After``) and closed at once.

It also hands each request's cycle a :class:`Coalescing` view of the transport, so
that an answer's status line and headers leave with its body in one ``send``: one
segment and one wake-up of the client instead of two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class Guards:
    """The slow-client guards (seconds, connections)."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_connections: int = 512


DEFAULT_GUARDS: Final = Guards()

_TIMEOUT_ANSWER: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 64\r\n\r\n"
    b'{"error": "the request was not received in time; send it again"}'
)
_BUSY_ANSWER: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 5\r\nconnection: close\r\ncontent-length: 61\r\n\r\n"
    b'{"error": "too many open connections; try again in a moment"}'
)


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus the :class:`Guards`."""

    def __init__(self, app: ASGIApp, *, guards: Guards = DEFAULT_GUARDS, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **kwargs)
        self.guards = guards


class Coalescing:
    """A transport whose writes wait for the next one, or for the end of the event-loop
    iteration, whichever comes first.

    uvicorn writes an answer's head and its body separately; through this view the two
    leave in one write. Nothing waits longer than the current iteration of the loop
    (``call_soon``), and closing writes what waits first.
    """

    __slots__ = ("transport", "loop", "pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.pending: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.pending is None:
            self.pending = bytes(data)
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(self.pending + data)
            self.pending = None

    def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            if not self.transport.is_closing():
                self.transport.write(pending)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, …
        return getattr(self.transport, name)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and a connection bound."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guards = config.guards if isinstance(config, GuardedConfig) else DEFAULT_GUARDS
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""  # "headers", "body" or "" (nothing awaited from the client)
        self._begun = False  # bytes of the awaited request have arrived
        self._refused = False

    # -- the guards ------------------------------------------------------------------------

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = ""

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == "headers":
            answer = self._begun  # an idle connection is closed without a word
        else:  # the body: unless the app has begun its answer already
            answer = cycle is None or not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # What connection_lost would do: the app's receive() answers "disconnect",
            # and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()

    # -- uvicorn's protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._coalescing = Coalescing(transport, self.loop)
        if len(self.connections) > self.guards.max_connections:
            self._refused = True
            transport.write(_BUSY_ANSWER)
            transport.close()
            return
        self._arm("headers", self.guards.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:  # pipelined behind a request the app still handles
            self._arm("headers", self.guards.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm("body", self.guards.body_timeout)
        super().on_headers_complete()
        if self.cycle is not None:  # None: an upgrade request, answered by uvicorn
            self.cycle.transport = self._coalescing  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        self._begun = False
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self._await_next()  # answered before its body was in: now the next request

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # super() starts the next one: nothing to await
        super().on_response_complete()
        if not self._phase and not pipelined:  # the body is in (else its deadline runs on)
            self._await_next()

    def _await_next(self) -> None:
        if not self.transport.is_closing() and not self.pipeline:
            self._arm("headers", self.guards.header_timeout)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(
    app: ASGIApp, *, log_level: str = "warning", guards: Guards = DEFAULT_GUARDS
) -> uvicorn.Server:
    config = GuardedConfig(
        app,
        guards=guards,
        access_log=False,  # uvicorn's access log names the client address
        proxy_headers=False,  # never look at X-Forwarded-For either
        server_header=False,
        log_config=None,  # logging is configured by the caller (the CLI)
        log_level=log_level,
        timeout_keep_alive=max(1, round(guards.header_timeout)),
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


@dataclass
class Running:
    """A collector serving in a background thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, *, wait: bool = True) -> None:
        """Ask the server to stop; with ``wait``, until it has (uvicorn takes ~0.2 s)."""
        self.server.should_exit = True
        if wait:
            self.thread.join(10)


def start_in_thread(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, guards: Guards = DEFAULT_GUARDS
) -> Running:
    """Serve ``app`` on ``host:port`` from a daemon thread; returns once it listens."""
    sock = bind(host, port)
    server = make_server(app, guards=guards)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the collector did not start")
        time.sleep(0.005)
    return Running(base_url(sock), server, thread)  # uvicorn closes the socket when it stops


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, guards: Guards = DEFAULT_GUARDS
) -> Iterator[Running]:
    """Serve ``app`` on ``host:port`` in a thread until the block ends."""
    running = start_in_thread(app, host, port, guards=guards)
    try:
        yield running
    finally:
        running.stop()
