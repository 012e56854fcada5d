"""Serving the collector with uvicorn on a socket we bind ourselves.

Binding first lets ``--port 0`` (and tests) learn the real port before the
first request, and lets the CLI print where it listens. uvicorn runs with its
access log off (its lines carry the client's address); :class:`collector.app.AccessLog`
writes ours without it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp


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


def make_server(app: ASGIApp, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        access_log=False,  # uvicorn's access log names the client address
        proxy_headers=False,  # never look at X-Forwarded-For either
        server_header=False,
        log_config=None,  # logging is configured by the caller (the CLI)
        log_level=log_level,
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


def start_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve ``app`` on ``host:port`` from a daemon thread; returns once it listens."""
    sock = bind(host, port)
    server = make_server(app)
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
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[Running]:
    """Serve ``app`` on ``host:port`` in a thread until the block ends."""
    running = start_in_thread(app, host, port)
    try:
        yield running
    finally:
        running.stop()
