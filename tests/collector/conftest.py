"""Collector fixtures: a storage on SQLite and on PostgreSQL, a real server around it.

PostgreSQL: one throwaway cluster per test session (``tests.support.postgres``: found on
the PATH or in /usr/lib/postgresql/*/bin, ``initdb`` into a temp dir, its own port and
socket dir, ``fsync=off``). If it cannot be started the PostgreSQL tests FAIL, so that CI
cannot pass without them; outside CI ``HELIOS_SKIP_POSTGRES=1`` skips them instead (for a
laptop without PostgreSQL).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from collector import Storage, create_app
from collector.schema import metadata
from collector.server import Running, serve_in_thread, start_in_thread
from tests.collector.payloads import auth, auth_of
from tests.helpers import FakeClock
from tests.support import postgres
from tests.support.ci import skip_on_purpose


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """``postgresql://app:…@127.0.0.1:PORT/app_test`` on a cluster made for this session."""
    skip_on_purpose("HELIOS_SKIP_POSTGRES", "the PostgreSQL tests")
    with contextlib.ExitStack() as stack:
        try:
            pg = stack.enter_context(
                postgres.throwaway_cluster(
                    settings={"max_connections": "200"}, prefix="collector-pg-"
                )
            )
            pg.sql("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
            pg.sql("CREATE DATABASE app_test OWNER app")
            pg.sql("CREATE DATABASE app_refusals OWNER app")
        except postgres.PostgresUnavailable as e:
            stack.close()
            pytest.fail(
                f"{e}\n(or set HELIOS_SKIP_POSTGRES=1 to skip the PostgreSQL tests, outside CI)",
                pytrace=False,
            )
        yield pg.dsn("app", "app-pw", "app_test")


def reset_postgres(dsn: str) -> None:
    """Drop every collector table: each test starts from an empty database."""
    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's collector database lives: a file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "collector" / "collector.db")
    dsn = str(request.getfixturevalue("pg_dsn"))
    reset_postgres(dsn)
    return dsn


@pytest.fixture
def storage(db_target: str) -> Iterator[Storage]:
    s = Storage(db_target)
    yield s
    s.close()


class Http:
    """The session's HTTP client, aimed at one collector (relative URLs are its)."""

    def __init__(self, client: httpx.Client, base: str) -> None:
        self.client = client
        self.base = base

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url if "://" in url else self.base + url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Collector:
    """A collector served by uvicorn on 127.0.0.1, and a client for it."""

    url: str
    http: Http
    storage: Storage
    clock: FakeClock

    def post(self, body: bytes, *, signed: bool = True, **headers: str) -> httpx.Response:
        """POST a heartbeat, with its instance's secret unless ``signed`` is false (or
        an ``Authorization`` is among ``headers``)."""
        return self.http.post(
            "/api/instances/heartbeat",
            content=body,
            headers={
                "Content-Type": "application/json",
                **(auth_of(body) if signed else {}),
                **headers,
            },
        )

    def instance(self, iid: str, **headers: str) -> httpx.Response:
        """``GET /api/instances/{iid}`` with that instance's secret (unless given)."""
        return self.http.get(f"/api/instances/{iid}", headers={**auth(iid), **headers})

    def forget(self, iid: str, **headers: str) -> httpx.Response:
        """``DELETE /api/instances/{iid}`` with that instance's secret (unless given)."""
        return self.http.delete(f"/api/instances/{iid}", headers={**auth(iid), **headers})

    def insights(self, days: int = 30, **params: int) -> dict[str, Any]:
        r = self.http.get("/api/insights", params={"days": days, **params})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """Made once: an httpx client loading the CA bundle itself costs ~40 ms (only
    plain HTTP on loopback is used here)."""
    return ssl.create_default_context()


#: As many keep-alive connections as the tests have threads: when more threads than
#: ``max_keepalive_connections`` share one httpx client, httpcore 1.0.9 now and then
#: closes a connection another thread is using ("Bad file descriptor"; encode/httpcore
#: issue 1110).
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)


def client(tls: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(timeout=30, trust_env=False, verify=tls, limits=LIMITS)


@pytest.fixture
def http_client(tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    """A client per test, so that no keep-alive connection outlives its server."""
    with client(tls) as http:
        yield http


@pytest.fixture(scope="session")
def stopping() -> Iterator[list[Running]]:
    """Servers asked to stop; joined at the end of the session, not one by one
    (uvicorn's shutdown sleeps ~0.2 s, which per test would be most of the suite)."""
    servers: list[Running] = []
    yield servers
    for running in servers:
        running.thread.join(10)


@pytest.fixture
def serve(
    storage: Storage, clock: FakeClock, http_client: httpx.Client, stopping: list[Running]
) -> Iterator[Callable[..., Collector]]:
    """Start a collector on the test's storage: ``serve(**create_app_kwargs)``."""
    started: list[Running] = []

    def start(**kwargs: Any) -> Collector:
        kwargs.setdefault("clock", clock)
        running = start_in_thread(create_app(storage, **kwargs))
        started.append(running)
        return Collector(running.url, Http(http_client, running.url), storage, clock)

    yield start
    for running in started:
        running.stop(wait=False)
        stopping.append(running)


@pytest.fixture
def collector(serve: Callable[..., Collector]) -> Collector:
    return serve()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def refusing(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls: ssl.SSLContext,
) -> Iterator[Collector]:
    """One collector per module and backend for tests whose requests are all refused.

    Starting a server and a database for each of them would be most of their time;
    since nothing they send is stored, they share one (its own PostgreSQL
    database, so that the per-test resets do not touch it).
    """
    if request.param == "sqlite":
        target = str(tmp_path_factory.mktemp("refusing") / "collector.db")
    else:
        target = str(request.getfixturevalue("pg_dsn")).replace("/app_test", "/app_refusals")
        reset_postgres(target)
    storage = Storage(target)
    clock = FakeClock()
    with (
        serve_in_thread(create_app(storage, clock=clock)) as running,
        client(tls) as http,
    ):
        yield Collector(running.url, Http(http, running.url), storage, clock)
    storage.close()
