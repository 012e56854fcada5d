"""The real command line, ``python -m worker``, in a subprocess against a real receiver."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry, db, heartbeats, store
from outbox.store import Meta
from tests.support.env import child_env
from tests.support.outboxes import query
from tests.support.processes import Proc, once, run_worker, wait_for, worker_env
from tests.support.receiver import Receiver, Scripted
from worker.__main__ import Parts, cli, main

ON = worker_env()


def tracked(make_telemetry: Callable[..., Telemetry]) -> None:
    t = make_telemetry(clock=time.time)
    for _ in range(12):
        t.track_api_call("users.list")
    t.track_api_call("groups.get", 3)
    t.track_command("sync")
    t.track_ui_action("bulk_edit", 2)
    t.close()


EXPECTED = {
    ("api", "users.list"): 12,
    ("api", "groups.get"): 3,
    ("command", "sync"): 1,
    ("ui", "bulk_edit"): 2,
}


def test_once_delivers_and_resets_the_counters(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    tracked(make_telemetry)
    r = run_worker(*once(db_path, receiver.url), env=ON)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("delivered heartbeat ") and "(accepted, 1 attempt(s))" in r.stdout
    assert receiver.totals() == EXPECTED
    [post] = receiver.posts()
    conn = db.connect(db_path)
    try:
        assert store.pending_counters(conn) == []
        [hb] = heartbeats.history(conn)
        assert hb.status == "sent" and hb.payload == post.body
        assert post.headers["idempotency-key"] == hb.id
    finally:
        conn.close()
    # a second run has nothing to send
    r = run_worker(*once(db_path, receiver.url), env=ON)
    assert (r.returncode, r.stdout) == (0, "nothing to send\n")
    assert len(receiver.posts()) == 1


def test_once_reads_the_environment(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    tracked(make_telemetry)
    env = worker_env(db_path, receiver.url, HELIOS_VERSION="9.9.9", HELIOS_EDITION="licensed")
    r = run_worker("--once", env=env)
    assert r.returncode == 0, r.stderr
    [p] = receiver.payloads()
    assert p["app"] == {"version": "9.9.9", "edition": "licensed"}
    assert receiver.posts()[0].headers["user-agent"] == "helios-telemetry/9.9.9"


def test_once_exits_1_when_a_heartbeat_stays_pending(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    tracked(make_telemetry)
    receiver.script.extend(Scripted(503) for _ in range(3))
    r = run_worker(
        *once(db_path, receiver.url, "--retry-attempts", "3", "--retry-max-wait", "0.01"), env=ON
    )
    assert r.returncode == 1
    assert "still pending (HTTP 503); it will be retried" in r.stderr
    assert r.stderr.count("not delivered") == 1  # one line for the whole backoff window
    assert len(receiver.posts()) == 3
    # the next run delivers the same heartbeat (the same bytes)
    r = run_worker(*once(db_path, receiver.url), env=ON)
    assert r.returncode == 0, r.stderr
    bodies = {p.body for p in receiver.posts()}
    assert len(bodies) == 1 and receiver.totals() == EXPECTED


def test_once_reports_a_retired_endpoint(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    tracked(make_telemetry)
    receiver.script.append(Scripted(410))
    r = run_worker(*once(db_path, receiver.url), env=ON)
    assert r.returncode == 1 and "the endpoint is retired (410 Gone)" in r.stderr
    r = run_worker(*once(db_path, receiver.url), env=ON)  # nothing is sent to it again
    assert r.returncode == 1 and len(receiver.posts()) == 1
    conn = db.connect(db_path)
    try:
        assert store.get(conn, Meta.RETIRED_ENDPOINT) == receiver.url
    finally:
        conn.close()


def test_local_mode_seals_and_opens_no_connection(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    tracked(make_telemetry)
    r = run_worker(*once(db_path, receiver.url), env=child_env(HELIOS_TELEMETRY_ENABLED="local"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("local mode: sealed heartbeat ")
    assert receiver.connections == 0
    conn = db.connect(db_path)
    try:
        [hb] = heartbeats.history(conn)
        assert hb.status == "local" and hb.counts()["api_usage"] == {
            "groups.get": 3,
            "users.list": 12,
        }
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), {"HELIOS_EDITION": "enterprise"}, "HELIOS_EDITION='enterprise' is not understood"),
        ((), {"HELIOS_TELEMETRY_ENABLED": "maybe"}, "HELIOS_TELEMETRY_ENABLED='maybe'"),
        (
            ("--endpoint", "http://telemetry.example/x"),
            {},
            "--endpoint http://telemetry.example/x is plain http",
        ),
        ((), {"HELIOS_TELEMETRY_ENDPOINT": "ftp://x"}, "is not an http(s) URL"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    db_path: Path, args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    r = run_worker("--once", "--db", str(db_path), *args, env=child_env(**env))
    assert r.returncode == 2
    assert r.stderr.startswith("outbox-worker: ") and needle in r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert not db_path.exists()  # nothing created


def test_a_version_the_collector_would_refuse_exits_2_and_seals_nothing(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """HELIOS_VERSION=latest would make every heartbeat a 422: refused before anything is
    sealed or sent, with the sentence ``outbox status`` shows."""
    tracked(make_telemetry)
    r = run_worker(*once(db_path, receiver.url), env=worker_env(HELIOS_VERSION="latest"))
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        "outbox-worker: HELIOS_VERSION='latest' is not a PEP 440 or semver version (1.4.2, "
        "2.0.0-rc.1); the collector would refuse every heartbeat: fix the variable\n"
    )
    assert r.stdout == ""
    assert receiver.connections == 0 and receiver.posts() == []
    conn = db.connect(db_path)
    try:
        assert heartbeats.history(conn) == []  # nothing sealed
        assert {(c.kind, c.name): c.count for c in store.pending_counters(conn)} == EXPECTED
    finally:
        conn.close()


@pytest.mark.parametrize("args", [("--bogus",), ("--retry-attempts", "0"), ("--once", "extra")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    r = run_worker(*args)
    assert r.returncode == 2 and "Usage: outbox-worker" in r.stderr


def test_help_lists_every_option() -> None:
    r = run_worker("--help")
    assert r.returncode == 0
    for param in cli.params:
        for opt in param.opts:
            assert opt in r.stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "outbox-worker"
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.startswith("outbox-worker, version ")


@pytest.mark.slow
def test_sigterm_finishes_the_step_and_exits_0(
    db_path: Path, receiver: Receiver, tmp_path: Path
) -> None:
    args = ("--db", str(db_path), "--endpoint", receiver.url)
    with Proc.worker(*args, env=ON, log=tmp_path / "worker.log") as proc:

        def holds_the_lease() -> bool:
            if not db_path.exists():
                return False
            try:  # the file appears a moment before its tables
                rows = query(db_path, "SELECT pid FROM worker_lease")
            except sqlite3.OperationalError:
                return False
            return rows == [(proc.pid,)]

        wait_for("the worker to take the lease", holds_the_lease)
        code = proc.stop()
    assert code == 0, proc.text()
    assert "SIGTERM: finishing the current step, then exiting" in proc.text()
    [(expires,)] = query(db_path, "SELECT expires_at FROM worker_lease")
    assert expires <= time.time() + 1  # released on the way out
    assert os.path.exists(db_path)


@pytest.mark.slow  # waits out the worker's 5 s busy timeout
def test_once_exits_1_with_one_line_when_the_outbox_stays_locked(
    db_path: Path, make_telemetry: Callable[..., Telemetry], capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process takes the write lock right after the seal and keeps it: maintenance
    is deferred, the cycle's last write times out, and ``--once`` says so (exit 1, no
    traceback); the sealed heartbeat is kept."""
    tracked(make_telemetry)
    holder = db.connect(db_path)

    def take_the_lock(step: str) -> None:
        if step == "after_seal_commit":
            holder.execute("BEGIN IMMEDIATE")

    try:
        rc = main(
            ["--once", "--db", str(db_path)],
            parts=Parts(hook=take_the_lock, environ={"HELIOS_TELEMETRY_ENABLED": "local"}),
        )
        err = capsys.readouterr().err
        assert rc == 1, err
        assert err.startswith(f"outbox-worker: {db_path}: the outbox is locked by another process")
        assert "Traceback" not in err
    finally:
        holder.close()
    conn = db.connect(db_path)
    try:
        [hb] = heartbeats.history(conn)
        assert hb.status == "local"
    finally:
        conn.close()
