"""The HTTP client a worker sends with: bounded in time, in size, and in where it goes.

A receiver must not be able to push the worker around:

* **a deadline per attempt**: every socket read and write waits at most what is left
  of the attempt's deadline (:class:`Deadline`), so a receiver that trickles one
  byte every few seconds cannot keep an attempt open past it (``httpx``'s own
  timeouts are per read);
* **a bounded answer**: :func:`read_answer` reads at most ``limit`` bytes of a
  body (a receipt is a few hundred bytes), undecoded, so a 200 MB or gzip-bombed
  answer costs nothing;
* **no proxy for loopback**: ``HTTP(S)_PROXY``/``ALL_PROXY`` (and ``NO_PROXY``) apply
  only to non-loopback endpoints, so a heartbeat for ``http://127.0.0.1`` never goes
  in clear text to a proxy. The CA bundle still comes from ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` (``httpx.create_ssl_context``).

Redirects are never followed: a heartbeat goes to the configured endpoint or nowhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from outbox.config import is_loopback
from outbox.errors import SettingsError

#: Bytes of an answer read at most.
MAX_ANSWER_BYTES: Final = 64 * 1024


class Deadline:
    """When the current attempt must be over (``time.monotonic`` seconds), or None."""

    def __init__(self) -> None:
        self.at: float | None = None

    def start(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def clear(self) -> None:
        self.at = None

    def bound(self, timeout: float | None, exc: type[Exception]) -> float | None:
        """``timeout`` shortened to what is left; raises ``exc`` once nothing is left."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise exc("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, bounded), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's synchronous sockets, every wait bounded by the :class:`Deadline`."""

    def __init__(self, deadline: Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - never used for heartbeats
        raise httpcore.ConnectError("unix sockets are not used for heartbeats")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PoolTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` around a connection pool built here (with our backend)."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool


def _bypassed(host: str, no_proxy: str) -> bool:
    """``NO_PROXY``: ``*``, or hosts and domains (``example.com`` covers ``a.example.com``)."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.strip("[]").lstrip(".")
        if entry == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


def proxy_for(endpoint: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL a heartbeat to ``endpoint`` goes through, or None (never for loopback).

    :raises SettingsError: for a proxy this worker cannot use (only http(s) proxies).
    """
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    env = os.environ if environ is None else environ
    proxies: dict[str, str] = {}
    for name, value in env.items():  # curl's convention: the lowercase name wins
        if value and name.lower().endswith("_proxy"):
            key = name.lower()[: -len("_proxy")]
            if name.islower() or key not in proxies:
                proxies[key] = value
    if _bypassed(host.lower(), proxies.get("no", "")):
        return None
    url = proxies.get(parts.scheme) or proxies.get("all")
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise SettingsError(
            f"the proxy {urlsplit(url).scheme}://… set for {parts.scheme} URLs is not an "
            "http(s) proxy; heartbeats go through http(s) proxies only (or set NO_PROXY)"
        )
    return url


def build_client(
    endpoint: str,
    *,
    headers: Mapping[str, str],
    connect_timeout: float,
    read_timeout: float,
    deadline: Deadline,
    transport: httpx.BaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> httpx.Client:
    """The one client of a worker (tests pass a ``transport``; then only the timeouts apply)."""
    if transport is None:
        proxy = proxy_for(endpoint, environ)
        pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=True),
            proxy=None if proxy is None else httpcore.Proxy(proxy),
            network_backend=_Backend(deadline),
            max_connections=1,
        )
        transport = _PoolTransport(pool)
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        trust_env=False,  # proxies and CA bundle were taken from the environment above
        follow_redirects=False,
        headers={**headers, "Accept-Encoding": "identity"},
    )


def read_answer(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes | None:
    """At most ``limit`` bytes of a streamed answer's body; None when it was longer."""
    try:
        held = response.content  # already in memory (a response a test transport built)
    except httpx.ResponseNotRead:
        pass
    else:
        return held if len(held) <= limit else None
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
