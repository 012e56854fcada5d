"""Telemetry off: the worker opens no connection at all and deletes what was not sent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry, db, heartbeats, store
from outbox.contract import DROP_REASONS
from tests.helpers import FakeClock, child_env, totals
from tests.receiver import Receiver, Scripted
from worker.loop import Worker

from .conftest import ROOT, run_worker


def unsent_outbox(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """A pending heartbeat (the receiver refused it) plus unsealed events behind it."""
    t = make_telemetry(clock=time.time)
    for _ in range(5):
        t.track_api_call("users.list")
    receiver.script.append(Scripted(503))
    r = run_worker(
        "--once",
        "--db",
        str(db_path),
        "--endpoint",
        receiver.url,
        "--retry-attempts",
        "1",
        env=child_env(HELIOS_TELEMETRY_ENABLED="true"),
    )
    assert r.returncode == 1, r.stderr
    t.track_command("sync", 3)
    t.close()


@pytest.mark.parametrize(
    "env",
    [
        {"DO_NOT_TRACK": "1", "HELIOS_TELEMETRY_ENABLED": "true"},
        {"HELIOS_TELEMETRY_ENABLED": "false"},
        {},
    ],
    ids=["DO_NOT_TRACK", "ENABLED=false", "default"],
)
def test_once_while_off_opens_no_socket_and_deletes_unsent_data(
    db_path: Path,
    receiver: Receiver,
    make_telemetry: Callable[..., Telemetry],
    env: dict[str, str],
) -> None:
    unsent_outbox(db_path, receiver, make_telemetry)
    before = receiver.connections
    assert before == 1
    r = run_worker("--once", "--db", str(db_path), "--endpoint", receiver.url, env=child_env(**env))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "telemetry is off: nothing sent, no connection opened; "
        "discarded 3 unsent counts and 1 unsent heartbeat(s)\n"
    )
    assert receiver.connections == before  # not one TCP connection
    assert totals(db_path) == {}  # the rows are gone, not just marked
    conn = db.connect(db_path)
    try:
        assert heartbeats.pending(conn) is None and store.pending_counters(conn) == []
        assert store.drops(conn).pending == {r: 0 for r in DROP_REASONS}
    finally:
        conn.close()


def test_no_outbox_and_off_creates_nothing(db_path: Path, receiver: Receiver) -> None:
    r = run_worker("--once", "--db", str(db_path), "--endpoint", receiver.url, env=child_env())
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
    assert receiver.totals() == {("command_usage", "sync"): 1}


@pytest.mark.slow
def test_the_running_worker_while_off_opens_no_socket(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    unsent_outbox(db_path, receiver, make_telemetry)
    before = receiver.connections
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "--db", str(db_path), "--endpoint", receiver.url],
        cwd=ROOT,
        env=child_env(DO_NOT_TRACK="1"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and totals(db_path):
            time.sleep(0.05)
        assert totals(db_path) == {}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "discarded 3 unsent counts and 1 unsent heartbeat(s)" in err
    assert receiver.connections == before
