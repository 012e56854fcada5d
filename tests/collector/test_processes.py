"""Several collector processes on one database (issue 16: scale-out), on SQLite and
PostgreSQL: real ``python -m collector`` processes, each heartbeat sent to two of them
at the same moment.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector import Storage, insights
from collector.errors import StorageBusy
from collector.validate import parse
from tests.collector.payloads import MIX, auth, body, totals
from tests.collector.test_cli import Server, start
from tests.support.clock import T0
from tests.support.env import child_env
from tests.support.processes import Proc, wait_for

pytestmark = pytest.mark.slow

INSTANCES = 12
PER_INSTANCE = 3


def iid(i: int) -> str:
    return f"5d0c0000-0000-4000-8000-{i:012d}"


@pytest.fixture
def two(db_target: str) -> Iterator[tuple[Server, Server]]:
    a, b = start("--db", db_target), start("--db", db_target)
    yield a, b
    for s in (a, b):
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def post_at_once(urls: list[str], content: bytes, instance: str) -> list[str]:
    """POST ``content`` to every URL at the same moment; the statuses, sorted."""
    go = threading.Barrier(len(urls))
    statuses: list[str] = []

    def send(url: str) -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            go.wait(10)
            r = http.post(
                url,
                content=content,
                headers={"Content-Type": "application/json", **auth(instance)},
            )
        statuses.append(r.json()["status"] if r.status_code == 200 else str(r.status_code))

    threads = [threading.Thread(target=send, args=(url,)) for url in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(statuses)


def test_a_heartbeat_sent_to_two_processes_at_once_is_counted_once(
    two: tuple[Server, Server], db_target: str
) -> None:
    urls = [s.heartbeat_url for s in two]
    outcomes = [
        post_at_once(urls, body(instance_id=iid(i), sequence=seq), iid(i))
        for seq in range(1, PER_INSTANCE + 1)
        for i in range(INSTANCES)
    ]
    assert outcomes == [["accepted", "duplicate"]] * (INSTANCES * PER_INSTANCE)
    for s in two:
        s.stop()
    storage = Storage(db_target)
    try:
        listed = storage.instances()
        assert len(listed) == INSTANCES
        assert {i.heartbeats for i in listed} == {PER_INSTANCE}
        assert {(i.missing, i.repeats) for i in listed} == {(0, 0)}
        info = storage.instance(iid(0))
        assert info is not None
        assert info.totals == {k: v * PER_INSTANCE for k, v in totals(MIX).items()}
        doc = storage.read(lambda conn: insights.collect(conn, now=int(T0), days=7))
        assert doc["totals"] == {k: v * INSTANCES * PER_INSTANCE for k, v in totals(MIX).items()}
        assert doc["heartbeats"]["received"] == INSTANCES * PER_INSTANCE
        assert doc["instances"]["in_window"] == INSTANCES
    finally:
        storage.close()


def test_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    server = start("--db", str(tmp_path / "collector.db"), "--workers", "3")
    try:
        assert any("3 worker processes share the socket" in line for line in server.banner)
        workers = children(server.proc.pid, 3)
        answered = []
        for i in range(30):  # a new connection each: the kernel hands them to any worker
            with httpx.Client(timeout=30, trust_env=False) as http:
                r = http.post(
                    server.heartbeat_url,
                    content=body(instance_id=iid(i)),
                    headers={"Content-Type": "application/json", **auth(iid(i))},
                )
            answered.append(r.json()["status"])
        assert answered == ["accepted"] * 30
        with httpx.Client(trust_env=False) as http:
            doc = http.get(f"{server.url}/api/insights?days=7").json()
        assert doc["instances"]["in_window"] == 30
        assert doc["totals"] == {k: 30 * v for k, v in totals(MIX).items()}
        server.stop()  # SIGTERM: every worker finishes, then the supervisor ends by it
        for pid in workers:
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


def test_a_worker_that_dies_takes_the_others_down(tmp_path: Path) -> None:
    server = start("--db", str(tmp_path / "collector.db"), "--workers", "2")
    try:
        first, second = children(server.proc.pid, 2)
        os.kill(first, signal.SIGKILL)
        assert server.proc.wait(30) == 1  # not half-serving: the supervisor ends, status 1
        assert not os.path.exists(f"/proc/{second}") or _zombie(second)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.communicate()


def children(pid: int, expected: int) -> list[int]:
    """The child processes of ``pid``, once there are ``expected`` of them (10 s at most)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 10
    while len(found := [int(p) for p in kids.read_text().split()]) < expected:
        assert time.monotonic() < deadline, f"{len(found)} workers, not {expected}"
        time.sleep(0.02)
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_writer_lock_held_too_long_by_another_process_is_busy(tmp_path: Path) -> None:
    """The cross-process writer lock (flock on ``<db>-writer.lock``): held by another
    process past the busy timeout, a write is StorageBusy (503), nothing half-done; once
    released (here: that process dies), writes go on."""
    db = tmp_path / "collector.db"
    made = Storage(db)
    made.migrate(now=0)
    made.close()
    take = (
        "import fcntl, os, sys, time; "
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('held', flush=True); "
        "time.sleep(60)"
    )
    argv = [sys.executable, "-c", take, f"{db}-writer.lock"]
    with Proc(argv, child_env(), tmp_path / "holder.log") as holder:
        # LOCK_NB: a lock that was not released makes the holder fail, not wait
        wait_for(
            "the other process to hold the lock",
            lambda: "held\n" in holder.text() or holder.returncode is not None,
        )
        assert holder.text() == "held\n"
        storage = Storage(db, busy_timeout=0.3)
        hb = dataclasses.replace(parse(body()), credential="c" * 64)
        with pytest.raises(StorageBusy, match="another collector process"):
            storage.ingest([hb], now=1)
        holder.kill()  # the kernel releases a dead process's lock
        assert storage.ingest([hb], now=1)[0].status == "accepted"
        assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("collector.db*")} == {0o600}
        storage.close()
