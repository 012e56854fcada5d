"""The worker SIGKILLed at every step boundary: after a restart the receiver's totals are exact.

The worker runs as a real process (``tests.worker.kill_at`` wraps the real command
line with a hook that SIGKILLs the process at the chosen step); the receiver is a
real HTTP server on 127.0.0.1 that dedupes by heartbeat id.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from outbox import db, heartbeats, store
from tests.support.outboxes import Outbox
from tests.support.processes import kill_worker_at, once, run_worker, worker_env
from tests.support.receiver import Receiver, Scripted

pytestmark = pytest.mark.slow

ON = worker_env()


def connect(outbox: Outbox) -> sqlite3.Connection:
    return db.connect(outbox.path)


def once_to(outbox: Outbox, receiver: Receiver, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_worker(*once(outbox.path, receiver.url, "--retry-attempts", "1", *extra), env=ON)


def killed_at(step: str, outbox: Outbox, receiver: Receiver) -> subprocess.CompletedProcess[str]:
    r = kill_worker_at(step, *once(outbox.path, receiver.url, "--retry-attempts", "1"), env=ON)
    assert r.returncode == -signal.SIGKILL, (step, r.returncode, r.stderr)
    return r


@pytest.fixture
def outbox(db_path: Path) -> Outbox:
    return Outbox(db_path)


def test_killed_between_send_and_mark_resends_the_same_id(
    outbox: Outbox, receiver: Receiver
) -> None:
    outbox.add(40)
    outbox.add(2, kind="command", name="sync")
    killed_at("after_post", outbox, receiver)
    [first] = receiver.posts()
    assert receiver.totals() == dict(outbox.written)  # received and counted ...
    conn = connect(outbox)
    try:
        hb = heartbeats.pending(conn)  # ... but not marked
        assert hb is not None and hb.id == first.headers["idempotency-key"]
    finally:
        conn.close()
    r = once_to(outbox, receiver)
    assert r.returncode == 0, r.stderr
    assert "(duplicate, 1 attempt(s))" in r.stdout
    second = receiver.posts()[1]
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"]
    assert second.body == first.body
    assert receiver.totals() == dict(outbox.written)  # still exact: counted once
    conn = connect(outbox)
    try:
        [hb] = heartbeats.history(conn)
        assert hb.status == "sent" and '"status": "duplicate"' in (hb.receipt or "")
    finally:
        conn.close()


def test_killed_during_the_seal_leaves_no_heartbeat_and_the_events_pending(
    outbox: Outbox, receiver: Receiver
) -> None:
    outbox.add(30)
    killed_at("before_seal_commit", outbox, receiver)
    conn = connect(outbox)
    try:
        assert heartbeats.history(conn) == []
        assert [(c.kind, c.name, c.count) for c in store.pending_counters(conn)] == [
            ("api", "users.list", 30)
        ]
    finally:
        conn.close()
    assert receiver.connections == 0
    assert once_to(outbox, receiver).returncode == 0
    assert receiver.totals() == dict(outbox.written)


@pytest.mark.parametrize(
    "step",
    [
        "after_seal_commit",
        "before_post",
        "after_post",
        "after_mark",
        "before_compact",
        "before_capacity",
        "before_purge",
        "purge",
        "before_checkpoint",
        "checkpoint",
        "after_cycle",
    ],
)
def test_killed_at_any_step_then_restarted_counts_everything_once(
    step: str, outbox: Outbox, receiver: Receiver
) -> None:
    outbox.add(25_000)  # more than one maintenance chunk, so "purge" is reached between chunks
    outbox.add(5, kind="ui", name="bulk_edit", day=1)
    killed_at(step, outbox, receiver)
    outbox.add(7, kind="command", name="sync")  # tracked while the worker was down
    r = once_to(outbox, receiver)
    assert r.returncode == 0, r.stderr
    assert receiver.totals() == dict(outbox.written)
    assert len(receiver.stored) == len({p.headers["idempotency-key"] for p in receiver.posts()})
    conn = connect(outbox)
    try:
        assert heartbeats.pending(conn) is None and store.pending_counters(conn) == []
    finally:
        conn.close()


def test_killed_during_compaction_of_a_backlog(outbox: Outbox, receiver: Receiver) -> None:
    """Receiver down: the first heartbeat stays pending and the backlog behind it is compacted."""
    outbox.add(10)
    receiver.script.append(Scripted(503))
    assert once_to(outbox, receiver).returncode == 1  # sealed, pending
    for day in range(3):
        outbox.add(15_000, day=day)
    receiver.script.append(Scripted(503))
    killed_at("compact", outbox, receiver)  # after the first compaction transaction
    conn = connect(outbox)
    try:
        rows = conn.execute(
            "SELECT count(*) FROM events WHERE id > ?", (store.sealed_through(conn),)
        ).fetchone()[0]
        assert rows < 45_000  # one window was folded and committed before the kill
        assert sum(c.count for c in store.pending_counters(conn)) == 45_000  # totals unchanged
    finally:
        conn.close()
    r = once_to(outbox, receiver)  # the pending one goes first, then the backlog is sealed and sent
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("delivered heartbeat") == 2
    assert receiver.totals() == dict(outbox.written)
    assert sorted(receiver.day_totals()) == [
        ("2026-11-25", "api", "users.list"),
        ("2026-11-26", "api", "users.list"),
        ("2026-11-27", "api", "users.list"),
    ]


def test_the_wrapper_runs_normally_when_the_step_is_never_reached(
    outbox: Outbox, receiver: Receiver
) -> None:
    outbox.add(3)
    r = kill_worker_at("no_such_step", *once(outbox.path, receiver.url), env=ON)
    assert r.returncode == 0, r.stderr
    assert receiver.totals() == dict(outbox.written)
