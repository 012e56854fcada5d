"""Telemetry off: the worker opens no connection at all; only an explicit opt-out erases
what was not sent (leaving no trace in the files); off by default, it holds back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry, consent, db, heartbeats, store
from outbox.contract import DROP_REASONS
from outbox.store import Meta
from tests.support.clock import FakeClock
from tests.support.env import child_env
from tests.support.outboxes import raw_files_contain
from tests.support.processes import Proc, once, run_worker, wait_for, worker_env
from tests.support.receiver import Receiver, Scripted
from tests.support.totals import totals
from worker.loop import Worker

#: A name only the unsent data carries (never sent, so never in the sent history).
MARKER = "zebracrossing.audit"


def unsent_outbox(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """A pending heartbeat (the receiver refused it) plus unsealed events behind it."""
    t = make_telemetry(clock=time.time)
    for _ in range(5):
        t.track_api_call(MARKER)
    receiver.script.append(Scripted(503))
    r = run_worker(*once(db_path, receiver.url, "--retry-attempts", "1"), env=worker_env())
    assert r.returncode == 1, r.stderr
    t.track_command("sync", 3)
    t.close()


@pytest.mark.parametrize(
    "env",
    [{"DO_NOT_TRACK": "1", "HELIOS_TELEMETRY_ENABLED": "true"}, {"HELIOS_TELEMETRY_ENABLED": "0"}],
    ids=["DO_NOT_TRACK", "ENABLED=0"],
)
def test_an_explicit_opt_out_erases_unsent_data_and_opens_no_socket(
    db_path: Path,
    receiver: Receiver,
    make_telemetry: Callable[..., Telemetry],
    env: dict[str, str],
) -> None:
    unsent_outbox(db_path, receiver, make_telemetry)
    before = receiver.connections
    assert before == 1
    app = make_telemetry(enabled=True)  # a running app keeps its connection (and the WAL) open
    assert app.track_api_call(MARKER)
    assert raw_files_contain(db_path, MARKER)  # the control: it is there before
    r = run_worker(*once(db_path, receiver.url), env=child_env(**env))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "telemetry is off: nothing sent, no connection opened; "
        "discarded 4 unsent counts and 1 unsent heartbeat(s)\n"
    )
    assert receiver.connections == before  # not one TCP connection
    assert totals(db_path) == {}  # the rows are gone, not just marked
    assert db_path.with_name(db_path.name + "-wal").exists()
    assert not raw_files_contain(db_path, MARKER)  # nor readable in the file or its WAL
    conn = db.connect(db_path)
    try:
        assert heartbeats.pending(conn) is None and store.pending_counters(conn) == []
        assert store.drops(conn).pending == dict.fromkeys(DROP_REASONS, 0)
    finally:
        conn.close()


def test_a_worker_whose_environment_says_nothing_holds_back(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """The app tracks with HELIOS_TELEMETRY_ENABLED=true; the worker (a cron job) was started
    without it: it sends nothing, deletes nothing, and says so with the fix (exit 1)."""
    unsent_outbox(db_path, receiver, make_telemetry)
    before = receiver.connections
    kept = totals(db_path)
    r = run_worker(*once(db_path, receiver.url), env=child_env())
    assert r.returncode == 1
    message = (
        "telemetry is off for this worker (telemetry is off until someone turns it on), but 3 "
        "unsent counts and a sealed heartbeat wait in the outbox (the app that tracks runs "
        "with HELIOS_TELEMETRY_ENABLED=true): nothing is sent and nothing is deleted. Start "
        "the worker with the app's environment (HELIOS_TELEMETRY_ENABLED=true), or let the "
        "organisation choose: `outbox enable` sends them, `outbox disable` deletes them"
    )
    assert r.stderr.endswith(f"not sent, not deleted: {message}\n")
    assert f"WARNING worker: {message}" in r.stderr
    assert receiver.connections == before
    assert totals(db_path) == kept and raw_files_contain(db_path, MARKER)
    conn = db.connect(db_path)
    try:
        assert heartbeats.pending(conn) is not None
        held = store.get_json(conn, Meta.WORKER_HELD_BACK)
        assert held is not None and held["message"] == message
    finally:
        conn.close()
    # Started with the app's environment, the same worker sends them all.
    r = run_worker(*once(db_path, receiver.url), env=worker_env())
    assert r.returncode == 0, r.stderr
    assert receiver.totals() == {("api", MARKER): 5, ("command", "sync"): 3}
    conn = db.connect(db_path)
    try:
        assert store.get(conn, Meta.WORKER_HELD_BACK) is None  # the note goes with the cause
    finally:
        conn.close()


def test_an_app_in_local_mode_keeps_a_willing_worker_local(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    """HELIOS_TELEMETRY_ENABLED=local in the app promises never to send: a worker started
    with =true (or the organisation's "on") does not break that promise."""
    t = make_telemetry(enabled="local")
    t.set_enabled(True)
    t.track_command("sync")
    t.close()  # ... and the next open records the app's mode
    t = make_telemetry(enabled="local")
    assert t.track_command("sync") is True
    w = make_worker(endpoint=receiver.url, env_enabled="true")
    s = w.tick(clock.now, force=True)
    assert (s.mode, s.deliveries, receiver.connections) == ("local", (), 0)
    [hb] = heartbeats.history(w.conn)
    assert hb.status == "local" and json.loads(hb.payload)["command_usage"] == {"sync": 2}


def test_no_outbox_and_off_creates_nothing(db_path: Path, receiver: Receiver) -> None:
    r = run_worker(*once(db_path, receiver.url), env=child_env())
    assert r.returncode == 0, r.stderr
    assert "telemetry is off" in r.stdout
    assert not db_path.exists() and not db_path.parent.exists()
    assert receiver.connections == 0


def test_a_dormant_worker_wakes_when_the_outbox_appears(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    db_path: Path,
) -> None:
    w = make_worker(endpoint=receiver.url, env_enabled=None)
    assert w.dormant and w.tick(clock.now).mode == "off" and not db_path.exists()
    t = make_telemetry(enabled=None)
    t.set_enabled(True)  # the organisation turns it on (this creates the outbox)
    t.track_command("sync")
    s = w.tick(clock.now + 10, force=True)
    assert s.mode == "on" and [d.result for d in s.deliveries] == ["sent"]
    assert receiver.totals() == {("command", "sync"): 1}


@pytest.mark.slow
def test_the_running_worker_while_off_opens_no_socket(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    unsent_outbox(db_path, receiver, make_telemetry)
    before = receiver.connections
    args = ("--db", str(db_path), "--endpoint", receiver.url)
    with Proc.worker(*args, env=child_env(DO_NOT_TRACK="1"), log=db_path.with_name("w.log")) as p:
        wait_for("the unsent counts to be erased", lambda: totals(db_path) == {})
        code = p.stop()
    assert code == 0, p.text()
    assert "erased 3 unsent counts and 1 unsent heartbeat(s)" in p.text()
    assert receiver.connections == before


def test_switching_off_erases_without_a_trace(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    """The organisation's opt-out (the privacy page, `outbox disable`): after compaction
    rewrote the rows and a seal froze them, no byte of the unsent names is left in the
    database file or the WAL."""
    t = make_telemetry()
    for _ in range(3000):
        t.track_api_call(MARKER)
    conn = db.connect(db_path)
    try:
        from outbox import maintenance

        maintenance.compact(conn, chunk=500)  # leaves freed cells behind in a plain delete
        plan = heartbeats.plan_seal(conn)
        heartbeats.commit_seal(conn, plan, heartbeat_id="a", now=0, version="1", edition="x")
        t.track_ui_action("zebra_unsent_ui")
        assert raw_files_contain(db_path, MARKER) and raw_files_contain(db_path, "zebra_unsent_ui")
        switched = consent.switch(conn, False, now=0)
    finally:
        conn.close()
    # The app's connection is still open (as in a running Helios): the WAL file stays, and
    # nothing of the unsent names may be readable in it either.
    assert t.track_api_call(MARKER) is False
    assert db_path.with_name(db_path.name + "-wal").exists()
    assert switched.wiped and switched.discarded == store.Discarded(1, 1)  # + the sealed 3000
    assert not raw_files_contain(db_path, MARKER)
    assert not raw_files_contain(db_path, "zebra_unsent_ui")
