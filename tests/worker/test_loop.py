"""One cycle at a time (``tick``) against a real receiver on 127.0.0.1, on a fake clock."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from outbox import Telemetry, db, heartbeats, store
from outbox.cli import CliContext, cli
from outbox.contract import iso_utc
from outbox.store import Meta
from outbox.store import get as get_meta
from tests.support.clock import T0, FakeClock
from tests.support.receiver import Receiver, Scripted
from tests.support.totals import totals
from worker.lease import Lease, LeaseRow, read
from worker.loop import Worker
from worker.pacing import STEPS
from worker.schedule import FIRST_DELAY

from .conftest import Sleeps, drive, make_config

HOUR, DAY = 3600, 86400


def track(t: Telemetry, n: int = 3) -> None:
    for _ in range(n):
        t.track_api_call("users.list")
    t.track_command("sync")


def meta(conn: sqlite3.Connection, key: str) -> object:
    return get_meta(conn, Meta(key))


def test_first_heartbeat_five_minutes_after_start_then_counters_reset(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    t = make_telemetry()
    track(t)
    w = make_worker(endpoint=receiver.url)
    s = w.tick(clock.now)
    assert s.sealed is None and s.deliveries == () and receiver.connections == 0
    assert meta(w.conn, "next_due_at") == T0 + FIRST_DELAY
    clock.advance(FIRST_DELAY - 1)
    assert w.tick(clock.now).sealed is None
    clock.advance(1)
    s = w.tick(clock.now)
    assert s.sealed is not None and [d.result for d in s.deliveries] == ["sent"]
    assert s.pending is None
    assert receiver.totals() == {("api", "users.list"): 3, ("command", "sync"): 1}
    # "reset after send" is the cursor moving: nothing pending, history says sent
    assert store.pending_counters(w.conn) == []
    [hb] = heartbeats.history(w.conn)
    assert (hb.id, hb.status, hb.attempts) == (s.sealed, "sent", 1)
    assert totals(w.config.db_path) == {}  # the covered rows were deleted by maintenance
    assert meta(w.conn, "last_cycle_at") == clock.now
    assert s.next_due_at is not None and meta(w.conn, "next_due_at") == int(s.next_due_at)
    assert clock.now + 0.7 * DAY <= s.next_due_at <= clock.now + 2 * DAY  # the second


def test_an_idle_instance_reports_in_with_an_empty_heartbeat(
    make_worker: Callable[..., Worker], receiver: Receiver, clock: FakeClock
) -> None:
    w = make_worker(endpoint=receiver.url, edition="licensed", checkpoint_every=900.0)
    drive(w, clock, T0 + 5 * HOUR)
    payloads = receiver.payloads()
    assert 4 <= len(payloads) <= 6  # one per hour (±10 %), the first at +5 min
    assert all(p["api_usage"] == {} and p["days"] == {} for p in payloads)
    assert [p["sequence"] for p in payloads] == list(range(1, len(payloads) + 1))


def test_once_ignores_the_schedule_and_seals_nothing_when_nothing_happened(
    make_worker: Callable[..., Worker], receiver: Receiver, clock: FakeClock
) -> None:
    w = make_worker(endpoint=receiver.url)
    s = w.tick(clock.now, force=True)
    assert s.sealed is None and s.pending is None and receiver.connections == 0


def test_receiver_down_one_log_line_per_backoff_window(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    track(make_telemetry())
    w = make_worker(endpoint=receiver.url)
    receiver.script.extend(Scripted(503) for _ in range(6))
    caplog.set_level(logging.INFO, logger="worker")
    s1 = w.tick(clock.now, force=True)
    assert [(d.result, d.attempts, d.status) for d in s1.deliveries] == [("pending", 3, 503)]
    assert s1.pending == s1.sealed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "not delivered: HTTP 503 after 3 attempt(s)" in warnings[0].message
    )
    assert len(sleeps) == 2  # between the attempts, through the injected sleep
    retry_at = meta(w.conn, "next_attempt_at")
    assert isinstance(retry_at, int) and clock.now + 30 <= retry_at <= clock.now + 60
    # before the window is over: no attempt, no log
    clock.now = retry_at - 1
    assert w.tick(clock.now).deliveries == ()
    assert len(receiver.posts()) == 3
    # the next window: 3 more attempts, one more line
    clock.now = retry_at
    s2 = w.tick(clock.now)
    assert [d.result for d in s2.deliveries] == ["pending"] and s2.sealed is None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    [hb] = heartbeats.history(w.conn)
    assert (hb.status, hb.attempts, hb.last_error) == ("pending", 6, "HTTP 503")
    # back up: delivered once, and no new seal while it was pending
    clock.now = float(str(meta(w.conn, "next_attempt_at")))
    s3 = w.tick(clock.now)
    assert [d.result for d in s3.deliveries] == ["sent"]
    assert len(receiver.payloads()) == 1 and meta(w.conn, "next_attempt_at") is None
    [hb] = heartbeats.history(w.conn)
    assert (hb.status, hb.attempts, hb.last_error) == ("sent", 7, None)


def test_rejected_is_kept_and_not_retried_and_the_next_seal_goes_on(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    t = make_telemetry()
    track(t)
    w = make_worker(endpoint=receiver.url)
    receiver.script.append(
        Scripted(422, {"Content-Type": "application/json"}, b'{"error": "unknown field"}')
    )
    s = w.tick(clock.now, force=True)
    assert [d.result for d in s.deliveries] == ["rejected"] and s.pending is None
    [hb] = heartbeats.history(w.conn)
    assert (hb.status, hb.attempts, hb.last_error) == ("rejected", 1, "HTTP 422: unknown field")
    t.track_command("sync")
    s = w.tick(clock.now + 60, force=True)
    assert [d.result for d in s.deliveries] == ["sent"]
    assert receiver.totals() == {("command", "sync"): 1}
    assert len(receiver.posts()) == 2


def test_410_retires_the_endpoint_until_it_changes(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    db_path: Path,
) -> None:
    track(make_telemetry())
    old = receiver.url.replace("/api/", "/old/api/")
    w = make_worker(endpoint=old)
    receiver.script.append(Scripted(410))
    s = w.tick(clock.now, force=True)
    assert s.retired and s.pending is not None
    assert meta(w.conn, "retired_endpoint") == old
    for hours in range(1, 30):  # due times come and go: nothing more is sent to it
        s = w.tick(clock.now + hours * HOUR)
        assert s.retired and s.deliveries == ()
    assert len(receiver.posts()) == 1
    w.close()
    # configured with a new endpoint: the retired mark is cleared and the heartbeat goes there
    w2 = make_worker(endpoint=receiver.url)
    s = w2.tick(clock.now + 31 * HOUR)
    assert not s.retired and s.deliveries[0].result == "sent"
    assert s.deliveries[0].heartbeat_id == heartbeats.history(w2.conn)[-1].id
    assert meta(w2.conn, "retired_endpoint") is None
    assert receiver.totals() == {("api", "users.list"): 3, ("command", "sync"): 1}


def test_off_discards_unsent_data_and_never_builds_a_client(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    db_path: Path,
) -> None:
    t = make_telemetry()
    track(t)
    on = make_worker(endpoint="http://127.0.0.1:9/api/instances/heartbeat")
    on.tick(clock.now, force=True)  # sealed, not delivered (nothing listens on port 9)
    on.close()
    track(t)
    w = make_worker(endpoint=receiver.url, env_enabled="false")
    assert heartbeats.pending(w.conn) is not None
    s = w.tick(clock.now + HOUR, force=True)
    assert (s.mode, s.discarded_events, s.discarded_heartbeats) == ("off", 4, 1)
    assert heartbeats.pending(w.conn) is None and store.pending_counters(w.conn) == []
    assert totals(db_path) == {}
    assert w.delivery._sender is None and receiver.connections == 0
    assert meta(w.conn, "next_due_at") is None


def test_local_mode_seals_on_schedule_and_never_sends(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    t = make_telemetry(enabled="local")
    track(t)
    w = make_worker(
        endpoint=receiver.url, env_enabled="local", edition="licensed", checkpoint_every=900.0
    )
    drive(w, clock, T0 + 3 * HOUR)
    hbs = heartbeats.history(w.conn)
    assert len(hbs) >= 2 and {h.status for h in hbs} == {"local"}
    assert hbs[-1].counts()["api_usage"] == {"users.list": 3}
    assert w.delivery._sender is None and receiver.connections == 0


def test_hooks_are_called_at_every_step_in_order(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    track(make_telemetry())
    steps: list[str] = []
    w = make_worker(endpoint=receiver.url, hook=steps.append)
    w.tick(clock.now, force=True)
    assert steps == [
        "before_seal_commit",
        "after_seal_commit",
        "before_post",
        "after_post",
        "after_mark",
        "before_compact",
        "before_capacity",
        "before_purge",
        "before_checkpoint",
        "checkpoint",
        "after_cycle",
    ]
    assert set(steps) <= set(STEPS)


def test_a_stop_request_interrupts_maintenance_between_chunks(
    make_worker: Callable[..., Worker], conn: sqlite3.Connection, clock: FakeClock
) -> None:
    conn.executemany(
        "INSERT INTO events (kind, name, count, at) VALUES ('api', 'users.list', 1, ?)",
        [(T0,)] * 500,
    )
    seen: list[str] = []
    w: Worker

    def hook(step: str) -> None:
        seen.append(step)
        if step == "compact":
            w.stop()

    w = make_worker(env_enabled="local", hook=hook, chunk=100)
    s = w.tick(clock.now)
    assert seen.count("compact") == 1 and "before_purge" not in seen and not s.maintained
    assert store.pending_counters(conn)[0].count == 500  # nothing lost by stopping


def test_the_wal_is_checkpointed_while_waiting(
    make_worker: Callable[..., Worker], clock: FakeClock
) -> None:
    steps: list[str] = []
    w = make_worker(hook=steps.append, env_enabled="local", checkpoint_every=30.0)
    w.tick(clock.now)
    steps.clear()
    for dt in (10, 20, 29, 30, 45, 61):
        w.tick(T0 + dt)
    # not due, nothing to do: only the cheap checkpoint, every 30 s or so
    assert steps.count("checkpoint") == 2


def test_run_stops_after_the_current_step_and_releases_the_lease(
    db_path: Path, clock: FakeClock, make_telemetry: Callable[..., Telemetry], receiver: Receiver
) -> None:
    track(make_telemetry())
    waits: list[float] = []
    w: Worker

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        if clock.now >= T0 + FIRST_DELAY + 60:
            w.stop()  # what SIGTERM does
        return w.stop_event.is_set()

    w = Worker(
        *make_config(db_path, endpoint=receiver.url), clock=clock, wait=wait, sleep=lambda _: None
    )
    w.open()
    assert w.run() == 0
    assert all(1.0 <= s <= 30.0 for s in waits)
    assert len(receiver.payloads()) == 1  # the heartbeat due at +5 min went out
    conn = db.connect(db_path)
    try:
        other = Lease(conn, ttl=300)  # another worker, started now
        holder = other.acquire(clock.now)
        assert holder is not None and holder.expires_at > clock.now  # held while running
        w.close()
        assert read(conn) == LeaseRow(holder.owner, holder.pid, holder.acquired_at, int(clock.now))
        assert other.acquire(clock.now) is None  # released: the next worker takes it at once
    finally:
        conn.close()


def full_disk(w: Worker, make_telemetry: Callable[..., Telemetry]) -> None:
    """A disk with no room left for what the next seal writes: 150 names tracked (a
    payload larger than a page, so the heartbeat row needs new pages), no free page left
    in the file, and the worker's connection may not grow it (``max_page_count``)."""
    t = make_telemetry(enabled="local")
    for i in range(300):
        assert t.track_api_call(f"v1.res{i % 150:03d}.list")
    t.close()
    w.maintain(T0)  # compacted first: what it frees would make room for the seal
    w.conn.executescript("PRAGMA incremental_vacuum")
    pages = w.conn.execute("PRAGMA page_count").fetchone()[0]
    assert w.conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages


def space_is_back(w: Worker) -> None:
    w.conn.execute("PRAGMA max_page_count = 4294967294")


def status(db_path: Path, clock: FakeClock) -> dict[str, Any]:
    """``outbox status --json`` on the worker's outbox, as an operator would run it."""
    r = CliRunner().invoke(
        cli,
        ["--db", str(db_path), "status", "--json"],
        obj=CliContext(clock=clock),
        env={"HELIOS_TELEMETRY_ENABLED": "local"},
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_a_full_disk_fails_one_cycle_which_status_shows_until_a_good_one(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    clock: FakeClock,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    waits: list[float] = []
    errors: list[object] = []  # what `outbox status` said between two cycles
    w: Worker

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        errors.append(status(db_path, clock)["worker_error"])
        if errors[-1] is not None:
            space_is_back(w)
        clock.advance(seconds)
        return bool(heartbeats.history(w.conn)) or len(waits) == 20

    w = make_worker(env_enabled="local", wait=wait)
    full_disk(w, make_telemetry)
    assert w.run() == 0
    message = f"{db_path}: the disk is full (database or disk is full); free some space"
    failed_at = T0 + FIRST_DELAY  # the seal due 5 minutes after the start
    # the cycles before the seal, the failed one (a 10 s pause), the good one after it
    assert errors == [None] * 10 + [{"message": message, "at": iso_utc(failed_at)}, None]
    assert waits[9:] == [30.0, 10.0, 30.0]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"cycle failed (1 in a row): {message}"
    ]
    assert meta(w.conn, "last_cycle_error") is None
    assert meta(w.conn, "last_cycle_at") == failed_at + 10
    [hb] = heartbeats.history(w.conn)
    assert hb.status == "local" and len(hb.counts()["api_usage"]) == 150


def test_a_full_disk_that_lasts_keeps_the_loop_alive(
    make_worker: Callable[..., Worker], make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    """Regression: the pause after the 1024th failed cycle in a row was 5 * 2**1024,
    an OverflowError that ended the worker (a disk full for a few days would do it)."""
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        return len(waits) >= 1110

    w = make_worker(env_enabled="local", wait=wait)
    full_disk(w, make_telemetry)
    assert w.run() == 0
    failed = waits[10:]  # every cycle from the first seal on fails
    assert failed[:6] == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0] and set(failed[5:]) == {300.0}
    assert len(failed) == 1100
    assert str(meta(w.conn, "last_cycle_error")).endswith(
        "the disk is full (database or disk is full); free some space"
    )


def test_freezegun_clock_first_heartbeat_after_five_minutes(
    db_path: Path, make_telemetry: Callable[..., Telemetry], receiver: Receiver
) -> None:
    with freeze_time("2026-11-25 10:00:00") as frozen:
        import time

        track(make_telemetry(clock=time.time))
        w = Worker(*make_config(db_path, endpoint=receiver.url), sleep=lambda _: None)
        w.open()
        try:
            assert w.tick(time.time()).sealed is None
            frozen.tick(299)
            assert w.tick(time.time()).sealed is None
            frozen.tick(1)
            assert w.tick(time.time()).sealed is not None
        finally:
            w.close()
    [p] = receiver.payloads()
    assert p["period_end"] == "2026-11-25T10:05:00Z"


def test_mock_transport_can_stand_in_for_the_network(
    make_worker: Callable[..., Worker], make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    track(make_telemetry())
    seen: list[bytes] = []

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"status": "accepted"})

    w = make_worker(transport=httpx.MockTransport(app))
    s = w.tick(clock.now, force=True)
    assert [d.result for d in s.deliveries] == ["sent"]
    assert seen == [heartbeats.get(w.conn, s.sealed or "").payload]  # type: ignore[union-attr]
