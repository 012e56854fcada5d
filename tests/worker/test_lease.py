"""One worker per outbox: the lease decision, the table, and what a second worker does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import db
from tests.support.clock import T0, FakeClock
from worker.errors import LeaseHeld, LeaseLost
from worker.lease import Lease, LeaseRow, holder_alive, may_take, pid_alive, read
from worker.loop import Worker

ME = "web1:100:aaaa"


def row(owner: str, pid: int, expires: float) -> LeaseRow:
    return LeaseRow(owner, pid, int(T0 - 60), int(expires))


@pytest.mark.parametrize(
    ("holder", "alive", "takes"),
    [
        (None, True, True),  # nobody ever held it
        (row(ME, 100, T0 + 60), True, True),  # ours: renew
        (row("web2:7:bbbb", 7, T0), True, True),  # expired (expires_at <= now)
        (row("web2:7:bbbb", 7, T0 + 60), True, False),  # another host, live lease
        (row("web2:7:bbbb", 7, T0 + 60), False, False),  # another host: its pids mean nothing here
        (row("web1:7:bbbb", 7, T0 + 60), True, False),  # this host, holder alive
        (row("web1:7:bbbb", 7, T0 + 60), False, True),  # this host, holder dead
    ],
)
def test_may_take(holder: LeaseRow | None, alive: bool, takes: bool) -> None:
    assert may_take(holder, owner=ME, host="web1", now=T0, alive=lambda _: alive) is takes


def test_a_holder_with_our_pid_is_alive_only_if_this_process_holds_it(db_path: Path) -> None:
    conn = db.connect(db_path)
    try:
        mine = Lease(conn, ttl=300)
        earlier_life = LeaseRow(f"{mine.host}:{mine.pid}:0000", mine.pid, T0, T0 + 300)
        assert not holder_alive(earlier_life)  # a container restarted with our pid number
        assert mine.acquire(T0) is None
        assert holder_alive(read(conn) or earlier_life)  # another Lease of this process
        mine.release(T0 + 1)
        assert not holder_alive(read(conn) or earlier_life)
    finally:
        conn.close()


def test_pid_alive() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pid_alive(1) and not pid_alive(int(done.stdout)) and not pid_alive(0)


def test_a_second_lease_is_refused_then_taken_when_expired(db_path: Path) -> None:
    a_conn, b_conn = db.connect(db_path), db.connect(db_path)
    try:
        a = Lease(a_conn, ttl=300)
        b = Lease(b_conn, ttl=300)
        assert a.acquire(T0) is None and a.held
        holder = b.acquire(T0 + 10)
        assert holder is not None and holder.owner == a.owner and holder.expires_at == T0 + 300
        a.renew(T0 + 200)  # now until T0 + 500
        assert b.acquire(T0 + 499) is not None
        assert b.acquire(T0 + 500) is None  # expired: taken over
        with pytest.raises(LeaseLost, match="took over"):
            a.renew(T0 + 501)
        assert not a.held
        r = read(a_conn)
        assert r is not None and r.owner == b.owner
    finally:
        a_conn.close()
        b_conn.close()


def test_the_lease_of_a_dead_worker_on_this_host_is_taken_at_once(db_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(done.stdout)
    conn = db.connect(db_path)
    try:
        first = Lease(conn, ttl=300, pid=dead)
        assert first.acquire(T0) is None
        second = Lease(conn, ttl=300)
        assert second.acquire(T0 + 1) is None  # not expired, but its holder is gone
    finally:
        conn.close()


def test_release_leaves_a_row_that_expired(db_path: Path) -> None:
    conn = db.connect(db_path)
    try:
        a = Lease(conn, ttl=300)
        a.acquire(T0)
        a.release(T0 + 5)
        assert read(conn) == LeaseRow(a.owner, a.pid, T0, T0 + 5)
        assert Lease(conn, ttl=300).acquire(T0 + 5) is None
    finally:
        conn.close()


def test_a_second_worker_says_so_and_refuses(make_worker: Callable[..., Worker]) -> None:
    first = make_worker()
    second = make_worker(opened=False)
    with pytest.raises(LeaseHeld) as e:
        second.open()
    assert f"pid {first.lease.pid if first.lease else 0}" in str(e.value)
    assert "--wait" in str(e.value)


def test_with_wait_a_second_worker_waits_for_the_first(
    make_worker: Callable[..., Worker], clock: FakeClock
) -> None:
    first = make_worker()
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        if len(waits) == 2:
            first.close()  # the first worker exits; its lease is released
        return False

    second = make_worker(opened=False, wait_for_lease=True, lease_poll=15.0, wait=wait)
    second.open()
    assert waits == [15.0, 15.0]
    r = read(second.conn)
    assert second.lease is not None and r is not None and r.owner == second.lease.owner


def test_the_lease_is_renewed_during_long_maintenance(
    make_worker: Callable[..., Worker], clock: FakeClock
) -> None:
    ttl = 0.0
    chunks = 0

    def hook(step: str) -> None:
        nonlocal chunks
        if step == "compact":
            chunks += 1
            clock.advance(ttl / 4)  # each chunk "takes" a quarter of the lease

    w = make_worker(env_enabled="local", chunk=100, hook=hook)
    ttl = w.options.lease_ttl
    w.conn.executemany(
        "INSERT INTO events (kind, name, count, at) VALUES ('api', 'users.list', 1, ?)",
        [(T0 + i * 86400 // 50,) for i in range(1_000)],  # 1,000 rows over 20 days
    )
    start = clock.now
    w.maintain(clock.now)
    assert chunks >= 10 and clock.now - start >= 2.5 * ttl  # longer than the lease lasts
    r = read(w.conn)
    assert r is not None and r.expires_at > clock.now  # still ours, never lapsed
    assert Lease(w.conn, ttl=ttl).acquire(clock.now) is not None  # nobody else may take it
