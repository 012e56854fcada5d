"""Slow and idle clients are cut (issue 14, finding 4): plain sockets against the real
server (``collector.server``, what ``outbox-collector`` runs), on SQLite and PostgreSQL.

Each trickling client sends one piece every 0.2 s and would go on for 10 s; with a
one-second deadline the server must close it after about five pieces. The tests
count pieces, not seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from collector import Storage, create_app
from collector.server import Guards, start_in_thread
from tests.collector.payloads import IID, auth, body
from tests.collector.test_cli import start

STEP = 0.2
PIECES = 50  # 10 s of trickling if nobody stops it
FAST = Guards(header_timeout=1.0, body_timeout=1.0, max_connections=16)


@pytest.fixture
def guarded(storage: Storage, clock: Any, stopping: list[Any]) -> Iterator[Callable[[Guards], str]]:
    """Start the collector with ``guards``; returns its ``host:port``."""
    started = []

    def start(guards: Guards) -> str:
        running = start_in_thread(create_app(storage, clock=clock), guards=guards)
        started.append(running)
        return running.url.removeprefix("http://")

    yield start
    for running in started:
        running.stop(wait=False)
        stopping.append(running)


def connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(STEP)
    return s


def closed_after(s: socket.socket, pieces: list[bytes]) -> tuple[int, bytes]:
    """Send ``pieces`` one per STEP; return how many went out before the server closed
    the connection, and what it answered."""
    answer = b""
    for sent, piece in enumerate(pieces):
        try:
            chunk = s.recv(4096)
            if chunk == b"":
                return sent, answer
            answer += chunk
            continue  # it answered: read on until it closes
        except TimeoutError:
            pass
        except ConnectionResetError:
            return sent, answer
        try:
            s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent, answer
    return len(pieces), answer


HEAD = (
    b"POST /api/instances/heartbeat HTTP/1.1\r\nHost: collector\r\n"
    b"Content-Type: application/json\r\n"
)


def test_a_client_trickling_its_headers_is_cut_at_the_deadline(
    guarded: Callable[[Guards], str],
) -> None:
    with connect(guarded(FAST)) as s:
        sent, answer = closed_after(s, [HEAD] + [b"X-Slow-%d: 1\r\n" % i for i in range(PIECES)])
    assert 3 <= sent <= 9, sent  # about 1 s of 0.2 s steps, far from the 10 s it wanted
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_client_trickling_its_body_is_cut_at_the_deadline(
    guarded: Callable[[Guards], str],
) -> None:
    b = body()
    head = HEAD + b"Authorization: %s\r\nContent-Length: %d\r\n\r\n" % (
        auth(IID)["Authorization"].encode(),
        len(b),
    )
    with connect(guarded(FAST)) as s:
        sent, answer = closed_after(s, [head] + [b[i : i + 1] for i in range(PIECES)])
    assert 3 <= sent <= 9, sent
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_an_idle_connection_is_closed_without_a_word(guarded: Callable[[Guards], str]) -> None:
    with connect(guarded(FAST)) as s:
        sent, answer = closed_after(s, [b""] * PIECES)
    assert 3 <= sent <= 9, sent
    assert answer == b""


def test_connections_past_the_bound_are_refused(
    guarded: Callable[[Guards], str],
) -> None:
    address = guarded(Guards(header_timeout=30, body_timeout=30, max_connections=8))
    idle = [connect(address) for _ in range(8)]
    try:
        time.sleep(0.3)  # let the server accept them all
        extra = [connect(address) for _ in range(5)]
        for s in extra:
            s.settimeout(5)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"retry-after: 5" in answer
            s.close()
        for s in idle:  # the first eight are still open
            s.settimeout(0.05)
            with pytest.raises(TimeoutError):
                s.recv(1)
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    host, port = address.rsplit(":", 1)
    r = httpx.post(
        f"http://{address}/api/instances/heartbeat",
        content=body(),
        headers={"Content-Type": "application/json", **auth(IID)},
    )
    assert r.json()["status"] == "accepted"


def test_a_prompt_client_on_a_slow_database_is_not_cut(
    guarded: Callable[[Guards], str], storage: Storage
) -> None:
    """The deadlines are the client's: a request the app takes long over is answered."""
    original = storage.ingest

    def slow_ingest(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # longer than both deadlines
        return original(*args, **kwargs)

    storage.ingest = slow_ingest  # type: ignore[method-assign]
    address = guarded(FAST)
    with httpx.Client(base_url=f"http://{address}") as http:
        for seq in (1, 2):  # a keep-alive connection, two requests
            r = http.post(
                "/api/instances/heartbeat",
                content=body(sequence=seq),
                headers={"Content-Type": "application/json", **auth(IID)},
            )
            assert r.json()["status"] == "accepted"


@pytest.mark.slow
def test_outbox_collector_started_as_documented_cuts_a_trickling_client(tmp_path: Any) -> None:
    server = start("--db", str(tmp_path / "c.db"), "--header-timeout", "1")
    try:
        address = server.url.removeprefix("http://")
        with connect(address) as s:
            sent, answer = closed_after(s, [HEAD] + [b"X-Slow: 1\r\n"] * PIECES)
        assert 3 <= sent <= 9, sent
        assert answer.startswith(b"HTTP/1.1 408")
    finally:
        server.proc.terminate()
        server.proc.communicate(timeout=20)


def test_the_deadlines_are_on_the_command_line() -> None:
    from click.testing import CliRunner

    from collector.__main__ import main

    out = CliRunner().invoke(main, ["--help"]).output
    for option in ("--header-timeout", "--body-timeout", "--max-connections", "--min-instances"):
        assert option in out
