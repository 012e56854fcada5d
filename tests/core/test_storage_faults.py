"""Disk full, read-only, corrupt or replaced outbox: track calls return, the loss is counted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from outbox import Telemetry, db, store
from outbox.client import FILE_CHECK_EVERY, REOPEN_AFTER
from tests.support.clock import FakeClock
from tests.support.totals import totals


def dropped(path: Path, reason: str = "storage_error") -> int:
    conn = db.connect(path)
    try:
        return store.drops(conn).pending[reason]
    finally:
        conn.close()


def test_disk_full_is_counted_and_flushed_once_space_is_back(make_telemetry, db_path) -> None:
    t: Telemetry = make_telemetry()
    assert t.track_api_call("users.list")
    # White box: cap this connection's file at its current size, i.e. a full disk.
    conn = t._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    results = [t.track_api_call("users.list") for _ in range(2000)]
    stored, failed = results.count(True), results.count(False)
    assert failed > 0
    assert t.unstored == {"storage_error": failed}
    assert "full" in (t.last_error or "")
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert t.track_api_call("users.list")  # space is back: the loss is written down
    assert t.unstored == {}
    assert totals(db_path) == {("api", "users.list"): 1 + stored + 1}
    assert dropped(db_path) == failed


def test_corrupt_file_track_calls_return_and_count(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(16384))
    tick = FakeClock(0)
    t = Telemetry(db_path=db_path, enabled=True, environ={}, monotonic=tick)
    assert [t.track_api_call("users.list") for _ in range(50)] == [False] * 50
    assert t.unstored == {"storage_error": 50}
    assert "not a readable outbox" in (t.last_error or "")
    assert "mv " in (t.last_error or "")  # the message says what to do
    # Recovery (what the worker does): move the garbage aside; after the pause, it reopens.
    shutil.move(db_path, db_path.with_suffix(".corrupt"))
    assert t.track_api_call("users.list") is False  # still pausing before reopening
    tick.advance(REOPEN_AFTER)
    assert t.track_api_call("users.list") is True
    assert totals(db_path) == {("api", "users.list"): 1}
    assert dropped(db_path) == 51


def test_file_corrupted_in_place_while_open(make_telemetry, db_path) -> None:
    t: Telemetry = make_telemetry()
    assert t.track_api_call("users.list")
    size = db_path.stat().st_size
    with open(db_path, "r+b") as f:  # garbage over the whole file, header included
        f.write(os.urandom(max(size, 8192)))
    for path in (
        db_path.with_name(db_path.name + "-wal"),
        db_path.with_name(db_path.name + "-shm"),
    ):
        path.write_bytes(os.urandom(4096))
    results = [t.track_api_call("users.list") for _ in range(100)]
    assert results.count(False) >= 1
    assert sum(t.unstored.values()) == results.count(False)


NOBODY = 65534


def _as_nobody(fn) -> dict[str, object]:
    """Run ``fn`` in a forked child that has dropped root (as root, files are always writable)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            out = fn()
        except BaseException as e:  # report, never return into pytest
            out = {"raised": repr(e)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture
def reachable(make_telemetry, db_path) -> Iterator[Path]:
    """An outbox with one event, in a folder the child of ``_as_nobody`` can enter and
    write (its WAL and -shm go there): pytest's own temp folders are 0700, which would
    make the test about a file it cannot reach instead of one it cannot write."""
    t: Telemetry = make_telemetry()
    assert t.track_api_call("users.list")
    t.close()
    folder = Path(tempfile.mkdtemp(prefix="helios-read-only-"))
    try:
        folder.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(folder, NOBODY, NOBODY)
        path = folder / "telemetry.db"
        shutil.copyfile(db_path, path)  # owned by this user, not by the child
        yield path
    finally:
        shutil.rmtree(folder)


def test_read_only_outbox_track_calls_return_and_count(reachable: Path) -> None:
    reachable.chmod(0o444)

    def track_many() -> dict[str, object]:
        with contextlib.closing(sqlite3.connect(f"file:{reachable}?mode=ro", uri=True)) as c:
            readable = c.execute("SELECT count(*) FROM events").fetchone()[0]
        ro = Telemetry(db_path=reachable, enabled=True, environ={})
        results = [ro.track_api_call("users.list") for _ in range(20)]
        return {
            "readable": readable,
            "false": results.count(False),
            "unstored": ro.unstored,
            "error": ro.last_error,
        }

    out = _as_nobody(track_many)
    assert "raised" not in out
    assert out["readable"] == 1  # the child reads the file: what it cannot do is write it
    assert out["false"] == 20
    assert out["unstored"] == {"storage_error": 20}
    # the logged reason names the file and the fix, not only SQLite's words
    assert out["error"] == (
        f"{reachable}: the outbox cannot be opened for writing (attempt to write a readonly "
        "database); check that the file and its folder are writable by this user, or point "
        "HELIOS_TELEMETRY_DB at a writable path"
    )
    assert totals(reachable) == {("api", "users.list"): 1}


def test_a_replaced_outbox_file_is_followed(make_telemetry, db_path) -> None:
    t: Telemetry = make_telemetry()
    for _ in range(10):
        assert t.track_api_call("users.list")
    # What the worker's recovery does with a corrupt outbox: move it aside, start anew.
    aside = db_path.with_name("aside.db")
    for suffix in ("", "-wal", "-shm"):
        src = db_path.with_name(db_path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    db.connect(db_path).close()
    for _ in range(FILE_CHECK_EVERY):
        assert t.track_command("sync")
    # Within FILE_CHECK_EVERY writes the track connection notices and reopens the new file.
    assert t.track_ui_action("bulk_edit")
    new = totals(db_path)
    old = totals(aside)
    assert new[("ui", "bulk_edit")] == 1
    assert new.get(("command", "sync"), 0) + old.get(("command", "sync"), 0) == FILE_CHECK_EVERY
    assert old[("api", "users.list")] == 10


def test_busy_outbox_waits_at_most_the_busy_timeout(make_telemetry, db_path) -> None:
    t: Telemetry = make_telemetry(busy_timeout=0.05)
    assert t.track_api_call("users.list")
    blocker = db.connect(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        assert t.track_api_call("users.list") is False
        assert t.unstored == {"storage_error": 1}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert t.track_api_call("users.list")
    assert dropped(db_path) == 1
    assert totals(db_path) == {("api", "users.list"): 2}


def test_a_lock_let_go_within_the_busy_timeout_costs_a_wait_not_the_event(
    make_telemetry, db_path
) -> None:
    """Track calls wait in ``db.retry_busy`` (their connection's own busy handler is off):
    another process that lets go of the write lock in time delays the call, never drops it."""
    t: Telemetry = make_telemetry(busy_timeout=30.0)
    assert t.track_api_call("users.list")
    holder = db.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, holder.execute, args=("ROLLBACK",))
    release.start()
    try:
        assert t.track_api_call("users.list") is True
        assert not holder.in_transaction  # it got in only once the lock was let go
    finally:
        release.join()
        holder.close()
    assert t.unstored == {} and t.last_error is None
    assert totals(db_path) == {("api", "users.list"): 2}
    assert dropped(db_path) == 0


@pytest.mark.parametrize("bad", ["", "/dev/null/telemetry.db"])
def test_unusable_path_never_raises(bad: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    t = Telemetry(db_path=bad or tmp_path, enabled=True, environ={})  # a directory, or under a file
    assert t.track_api_call("users.list") is False
    assert t.unstored == {"storage_error": 1}


def test_over_the_size_cap_new_events_are_counted_not_stored(make_telemetry, db_path) -> None:
    from outbox.client import SIZE_CHECK_EVERY

    t: Telemetry = make_telemetry(max_bytes=64 * 1024)
    results = [t.track_api_call("users.list") for _ in range(SIZE_CHECK_EVERY + 100)]
    stored = results.count(True)
    assert results.count(False) == 100  # checked after SIZE_CHECK_EVERY writes: over, from then on
    assert totals(db_path) == {("api", "users.list"): stored}
    assert dropped(db_path, "over_capacity") == 100
    # A new process on the same outbox knows at once.
    again: Telemetry = make_telemetry(max_bytes=64 * 1024)
    assert again.track_api_call("users.list") is False
    assert dropped(db_path, "over_capacity") == 101
    assert "over_capacity" in (again.last_error or "")


def test_a_failure_after_the_write_never_turns_a_stored_event_into_a_loss(
    make_telemetry, db_path
) -> None:
    """The rare work after a write (storing earlier losses, the size check) can fail while
    the write itself succeeded: the call still says True and nothing is counted twice."""
    t = make_telemetry(busy_timeout=0.05)
    assert t.track_api_call("users.list")
    holder = db.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock too long
    assert t.track_api_call("users.list") is False
    holder.execute("ROLLBACK")
    assert t.unstored == {"storage_error": 1}  # to be stored with the next write
    holder.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON dropped BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    assert t.track_api_call("users.list") is True  # stored; only storing the loss failed
    assert totals(db_path) == {("api", "users.list"): 2}
    assert store.drops(holder).total["storage_error"] == 0 and t.unstored == {"storage_error": 1}
    holder.execute("DROP TRIGGER refuse")
    assert t.track_api_call("users.list") is True
    assert totals(db_path) == {("api", "users.list"): 3}
    assert store.drops(holder).total["storage_error"] == 1  # the one real loss, once
    assert t.unstored == {}
    holder.close()
