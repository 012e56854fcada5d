"""Fixtures for the web integration: an in-process ASGI client and a real uvicorn server."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from starlette.types import ASGIApp

from collector.server import serve_in_thread
from outbox import Telemetry
from tests.support.totals import totals

ORIGIN = "http://testserver"
SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}


T = TypeVar("T")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)`` in a fresh thread: works even while the test thread has a loop
    running (Playwright's sync API keeps one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn).result()


class Client:
    """A synchronous client for an ASGI app, in process (httpx's ASGITransport).

    Starlette's TestClient is avoided on purpose: with plain httpx it warns
    (deprecated), and warnings are errors here.
    """

    def __init__(self, app: ASGIApp, base_url: str = ORIGIN) -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as c:
                return await c.request(method, url, **kwargs)

        return run_async(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    with serve_in_thread(app) as running:
        yield running.url


def stored(path: Path) -> dict[tuple[str, str], int]:
    """Every count in the outbox at ``path`` ({} when there is no outbox, or not yet a schema)."""
    if not path.exists():
        return {}
    try:
        return totals(path)
    except sqlite3.OperationalError as e:  # the file was just created, the schema is coming
        if "no such table" not in str(e):
            raise
        return {}


def drops(path: Path) -> dict[str, int]:
    """Pending drop counts by reason, leaving out zeros ({} when there is no outbox)."""
    if not path.exists():
        return {}
    c = sqlite3.connect(path)
    try:
        return {r: int(n) for r, n in c.execute("SELECT reason, pending FROM dropped") if n}
    finally:
        c.close()


@pytest.fixture
def on(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A Telemetry that collects (HELIOS_TELEMETRY_ENABLED=true)."""
    return make_telemetry(enabled=True)


@pytest.fixture
def off(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A Telemetry that is off by default (nothing set), not locked."""
    return make_telemetry(enabled=None)
