"""Start-up check: a corrupt outbox is moved aside, recreated, and the loss logged and counted."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import consent, db, store
from outbox.store import Meta
from outbox.store import get as get_meta
from tests.support.clock import T0, FakeClock
from tests.support.processes import once, run_worker, worker_env
from tests.support.receiver import Receiver
from worker.loop import Worker
from worker.recovery import open_outbox, quick_check

STAMP = "20261125T100000Z"  # T0


def damaged_outbox(path: Path) -> str:
    """A real outbox whose event pages are overwritten: meta and settings stay readable."""
    c = db.connect(path)
    iid = store.instance_id(c)
    consent.switch(c, False, now=T0 - 60)
    c.execute("INSERT INTO meta (key, value) VALUES ('last_sequence', 41)")
    c.executemany(
        "INSERT INTO events (kind, name, count, at) VALUES ('api', 'users.list', 1, ?)",
        [(T0,)] * 20_000,
    )
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    with open(path, "r+b") as f:
        f.seek(4096 * 60 + 10)
        f.write(b"\x00" * 4000)
    return iid


def test_a_healthy_outbox_passes(db_path: Path) -> None:
    conn, recovered = open_outbox(db_path, now=T0)
    try:
        assert recovered is None and quick_check(conn) is None
        assert get_meta(conn, Meta.RECOVERED_FROM) is None
    finally:
        conn.close()


def test_a_file_that_is_not_a_database_is_moved_aside_and_counted(
    db_path: Path,
    make_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not an outbox\n" * 500)
    w = make_worker(env_enabled="local")
    aside = db_path.with_name(f"telemetry.db.corrupt-{STAMP}")
    assert aside.read_bytes() == b"this is not an outbox\n" * 500
    assert get_meta(w.conn, Meta.RECOVERED_FROM) == str(aside)
    assert get_meta(w.conn, Meta.RECOVERED_AT) == T0
    d = store.drops(w.conn)
    assert d.pending["storage_error"] == 1 and d.total["storage_error"] == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert str(aside) in error.getMessage() and "storage_error" in error.getMessage()
    # the new outbox works, and its first heartbeat reports the loss
    s = w.tick(T0 + 60, force=True)
    hb = w.conn.execute("SELECT payload FROM heartbeats WHERE id = ?", (s.sealed,)).fetchone()
    assert json.loads(hb[0])["dropped"]["storage_error"] == 1


def test_a_damaged_outbox_keeps_its_identity_and_its_opt_out(
    db_path: Path, make_worker: Callable[..., Worker], clock: FakeClock
) -> None:
    iid = damaged_outbox(db_path)
    w = make_worker(env_enabled="true")  # the environment says on ...
    assert store.instance_id(w.conn) == iid
    assert get_meta(w.conn, Meta.LAST_SEQUENCE) == 41
    assert store.org_enabled(w.conn) is False  # ... but the organisation had said no
    assert w.decision().mode == "off"
    assert db_path.with_name(f"telemetry.db.corrupt-{STAMP}").exists()
    assert w.tick(clock.now, force=True).mode == "off"


def test_a_second_recovery_in_the_same_second_does_not_overwrite_the_first(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    for n in (1, 2):
        db_path.write_bytes(b"garbage %d" % n * 1000)
        conn, recovered = open_outbox(db_path, now=T0)
        conn.close()
        assert recovered is not None
    first = db_path.with_name(f"telemetry.db.corrupt-{STAMP}")
    second = db_path.with_name(f"telemetry.db.corrupt-{STAMP}-2")
    assert first.read_bytes().startswith(b"garbage 1") and second.read_bytes().startswith(
        b"garbage 2"
    )


def test_the_command_line_recovers_and_delivers(
    db_path: Path, receiver: Receiver, tmp_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"\x00garbage" * 4096)
    r = run_worker(*once(db_path, receiver.url), env=worker_env())
    assert r.returncode == 0, r.stderr
    assert "was corrupt" in r.stderr and ".corrupt-" in r.stderr
    [p] = receiver.payloads()
    assert p["dropped"]["storage_error"] == 1 and p["api_usage"] == {}
    assert len(list(db_path.parent.glob("telemetry.db.corrupt-*"))) == 1


def test_an_unusable_path_is_a_configuration_error(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory.db"
    folder.mkdir()
    r = run_worker("--once", env=worker_env(folder))
    assert r.returncode == 2
    assert r.stderr.startswith("outbox-worker: ") and str(folder) in r.stderr
    assert r.stderr.count("\n") == 1  # one clear line
    assert "Traceback" not in r.stderr
    assert list(tmp_path.glob("*.corrupt-*")) == []


def test_an_outbox_replaced_while_the_worker_runs_is_recovered_at_the_next_cycle(
    db_path: Path, make_worker: Callable[..., Worker], clock: FakeClock
) -> None:
    """Regression: the worker kept using the old, unlinked file, and the garbage at the
    path stayed there, every track call failing, until the worker was restarted."""
    waits = 0

    def wait(timeout: float) -> bool:
        nonlocal waits
        waits += 1
        clock.advance(max(timeout, 1.0))
        if waits == 1:
            garbage = db_path.with_name("incoming")
            garbage.write_bytes(b"not an outbox " * 1000)
            os.replace(garbage, db_path)
        return waits == 2

    w = make_worker(wait=wait)
    old = w.conn
    assert w.run() == 0
    assert w.conn is not old
    [aside] = db_path.parent.glob("telemetry.db.corrupt-*")
    assert aside.read_bytes().startswith(b"not an outbox " * 1000)
    assert get_meta(w.conn, Meta.RECOVERED_FROM) == str(aside)
    assert store.drops(w.conn).pending["storage_error"] == 1
    assert quick_check(db.connect(db_path)) is None
