"""The worker's maintenance on a real outbox: chunked, yielding, and the core parts it uses."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry, db, heartbeats, maintenance, store
from tests.support.clock import T0, FakeClock
from worker.loop import Worker

DAY = 86400


def fill(conn: sqlite3.Connection, n: int, *, names: int = 7, days: int = 3) -> None:
    conn.executemany(
        "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)",
        [
            ("api" if i % 3 else "ui", f"n{i % names}.list", 1 + i % 4, T0 + (i % days) * DAY + i)
            for i in range(n)
        ],
    )


def test_aggregate_range_in_windows_equals_one_group_by(conn: sqlite3.Connection) -> None:
    fill(conn, 1000)
    whole, _ = store.aggregate_range(conn, 0, 1000, window=10**9)
    one = sorted((a.kind, a.name, str(a.day), a.count) for a in whole)
    for window in (1, 7, 333, 1000):
        aggs, first = store.aggregate_range(conn, 0, 1000, window=window)
        assert sorted((a.kind, a.name, str(a.day), a.count) for a in aggs) == one
        assert first == T0  # the earliest `at` of the range
    aggs, _ = store.aggregate_range(conn, 250, 750, window=64)
    assert (
        sum(a.count for a in aggs)
        == conn.execute("SELECT sum(count) FROM events WHERE id > 250 AND id <= 750").fetchone()[0]
    )


def test_vacuum_frees_every_page_in_a_few_transactions(conn: sqlite3.Connection) -> None:
    fill(conn, 20_000)
    conn.execute("DELETE FROM events")
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > 100
    steps: list[str] = []
    freed = maintenance.vacuum(conn, pages_per_step=40, hook=steps.append)
    assert freed == free and conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert steps == ["vacuum"] * (-(-free // 40) - 1)  # between transactions, not after the last


def test_the_worker_yields_between_maintenance_chunks(
    make_worker: Callable[..., Worker], conn: sqlite3.Connection, clock: FakeClock
) -> None:
    fill(conn, 3_000, names=3, days=2)
    expected = {(c.kind, c.name): c.count for c in store.pending_counters(conn)}
    steps: list[str] = []
    w = make_worker(env_enabled="local", chunk=500, hook=steps.append)
    assert w.maintain(clock.now)
    assert steps.count("compact") >= 6  # 3,000 rows in windows of 500
    after = {(c.kind, c.name): c.count for c in store.pending_counters(conn)}
    assert after == expected  # compaction never changes the totals
    # one row per (kind, name, day) is left: n0 is ui, n1 and n2 are api, over 2 days
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3 * 2
    # seal, settle, and the next maintenance deletes the covered rows in chunks, then vacuums
    s = w.tick(clock.now, force=True)
    hb = heartbeats.get(conn, s.sealed or "")
    assert hb is not None and hb.status == "local"
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_between_chunks_the_worker_pauses_for_real_and_a_stop_ends_the_pause(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    conn: sqlite3.Connection,
    clock: FakeClock,
) -> None:
    """``chunk_pause`` on a real clock (a minute here): after one compaction chunk the
    worker waits, holding no lock (a track call gets in meanwhile), and a stop request
    ends the wait at once, between two chunks, with the totals unchanged."""
    fill(conn, 3_000, names=3, days=2)
    expected = {(c.kind, c.name): c.count for c in store.pending_counters(conn)}
    steps: list[str] = []
    one_chunk = threading.Event()

    def hook(step: str) -> None:
        steps.append(step)
        if step == "compact":
            one_chunk.set()

    w = make_worker(env_enabled="local", chunk=500, chunk_pause=60.0, hook=hook)
    done: list[bool] = []
    maintaining = threading.Thread(target=lambda: done.append(w.maintain(clock.now)), daemon=True)
    maintaining.start()
    try:
        assert one_chunk.wait(30), "no compaction chunk was committed"
        assert make_telemetry().track_command("sync")  # the write lock is free
        time.sleep(1.0)  # without the pause the other five chunks would be done by now
        assert steps.count("compact") == 1
    finally:
        w.stop()
        maintaining.join(10)
    assert not maintaining.is_alive(), "the stop request did not end the pause"
    assert done == [False] and steps == ["before_compact", "compact"]
    after = {(c.kind, c.name): c.count for c in store.pending_counters(conn)}
    assert after == {**expected, ("command", "sync"): 1}


def test_a_busy_outbox_defers_maintenance_to_the_next_cycle(
    make_worker: Callable[..., Worker],
    db_path: Path,
    conn: sqlite3.Connection,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process holds the write lock past the worker's busy timeout when compaction
    starts: the cycle logs it and goes on (no traceback, nothing changed); the next one
    compacts."""
    fill(conn, 300, names=3, days=1)
    holder = db.connect(db_path)
    hold = True

    def take_the_lock(step: str) -> None:
        if step == "before_compact" and hold:
            holder.execute("BEGIN IMMEDIATE")

    w = make_worker(env_enabled="local", hook=take_the_lock)
    w.conn.execute("PRAGMA busy_timeout = 50")
    try:
        assert w.maintain(clock.now) is False
        assert holder.in_transaction
        holder.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 300
        deferred = [r for r in caplog.records if r.getMessage().startswith("maintenance deferred")]
        assert [r.levelno for r in deferred] == [logging.WARNING]
        hold = False
        assert w.maintain(clock.now) is True
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    finally:
        holder.close()
