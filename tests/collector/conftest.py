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
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import Storage
from collector.server import Running
from tests.support import postgres
from tests.support.ci import skip_on_purpose
from tests.support.clock import FakeClock
from tests.support.collector import Collector


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's collector database lives: a file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "collector" / "collector.db")
    dsn = str(request.getfixturevalue("pg_dsn"))
    postgres.drop_collector_tables(dsn)
    return dsn


@pytest.fixture
def storage(db_target: str) -> Iterator[Storage]:
    s = Storage(db_target)
    yield s
    s.close()


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
    started: list[Collector] = []

    def start(**kwargs: Any) -> Collector:
        kwargs.setdefault("clock", clock)
        started.append(Collector(storage, http=http_client, **kwargs).start())
        return started[-1]

    yield start
    for c in started:
        if (running := c.stop(wait=False)) is not None:
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
        postgres.drop_collector_tables(target)
    with client(tls) as http, Collector(Storage(target), http=http).start() as c:
        yield c
