"""Broken outboxes and wrong paths: one clear line with what to do, never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from outbox import Telemetry, db
from tests.cli import scenes
from tests.cli.conftest import Outbox
from tests.support.env import child_env
from tests.support.other_user import Runtime, Unavailable, as_other_user, reachable

READS = [["status"], ["status", "--json"], ["show"], ["preview"], ["heartbeats"]]
WRITES = [["enable"], ["disable"], ["track", "command", "sync"], ["purge", "--yes"]]
EVERY = [*READS, *WRITES, ["heartbeats", "--id", "1a2b"], ["forget", "--yes"]]


def one_line(r: Result, code: int) -> str:
    """The single error line of a failed command."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return str(lines[0])


@pytest.mark.parametrize("args", EVERY, ids=" ".join)
def test_garbage_file(run, db_path, args):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not an SQLite database, it is a note someone left here\n" * 64)
    line = one_line(run(*args, env=scenes.ON), 1)
    assert line == (
        f"Error: {db_path}: the file is not a readable outbox (file is not a database); "
        f"move it aside (mv {db_path} {db_path}.corrupt) and a new one is created on the next "
        "write, or run outbox-worker, which does this for you"
    )


@pytest.fixture
def damaged(outbox: Outbox, db_path: Path) -> Path:
    """A real outbox whose event pages were overwritten after the header: opens, then fails."""
    for i in range(800):
        outbox.track("api", f"route{i}.list")
    outbox.telemetry.close()
    with outbox.conn() as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path.read_bytes())
    page = 4096
    data[2 * page :] = b"\xa5" * (len(data) - 2 * page)
    db_path.write_bytes(bytes(data))
    return db_path


@pytest.mark.parametrize(
    "args", [["status"], ["show"], ["preview"], ["purge", "--yes"]], ids=" ".join
)
def test_damaged_pages_fail_cleanly(run, damaged, args):
    line = one_line(run(*args), 1)
    assert line.startswith(f"Error: {damaged}: the file is not a readable outbox (")
    assert "move it aside" in line


@pytest.fixture
def writer_lock(outbox: Outbox) -> Iterator[None]:
    """Another process holding the write lock (what a long write transaction looks like)."""
    outbox.track("command", "sync")
    other = sqlite3.connect(outbox.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.execute("ROLLBACK")
    other.close()


@pytest.mark.parametrize("args", [["enable"], ["disable"]], ids=" ".join)
def test_locked_outbox_write_commands(run, writer_lock, db_path, args):
    line = one_line(run(*args), 1)
    assert line == (
        f"Error: {db_path}: the outbox is locked by another process (database is locked); "
        "try again in a moment, or stop the process holding it"
    )


def test_locked_outbox_track(run, writer_lock):
    line = one_line(run("track", "command", "sync", env=scenes.ON), 1)
    assert line.startswith("Error: not stored: ")
    assert "locked" in line and "try again in a moment" in line


@pytest.mark.slow
def test_locked_outbox_track_in_a_real_process_prints_one_line(writer_lock, db_path):
    """No library warning on stderr next to the error (waits the CLI's 5 s busy timeout)."""
    r = subprocess.run(
        [str(Path(sys.executable).with_name("outbox")), "track", "command", "sync"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(HELIOS_TELEMETRY_DB=str(db_path), HELIOS_TELEMETRY_ENABLED="true"),
    )
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("Error: not stored: ")


def test_locked_outbox_purge(run, outbox, db_path):
    outbox.track("command", "sync")
    outbox.send("1a2b3c01-8c1d-4e4f-9a51-2d3c4b5a6f70")
    other = sqlite3.connect(outbox.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        line = one_line(run("purge", "--yes"), 1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert line.startswith(f"Error: {db_path}: the outbox is locked by another process")
    assert len(outbox.heartbeat_statuses()) == 1


def test_reads_are_not_blocked_by_a_writer(run, writer_lock):
    assert run("status").exit_code == 0
    assert run("show").output.splitlines()[1] == "command  sync        1          0"


def test_exclusive_lock_blocks_reads_with_a_clear_line(run, outbox, db_path):
    outbox.track("command", "sync")
    outbox.telemetry.close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
    holder.execute("COMMIT")  # exclusive mode: the lock stays until the connection closes
    try:
        line = one_line(run("status"), 1)
    finally:
        holder.close()
    assert line.startswith(f"Error: {db_path}: the outbox is locked by another process")


def test_newer_schema(run, outbox, db_path):
    outbox.track("command", "sync")
    outbox.telemetry.close()
    with outbox.conn() as c:
        c.execute("PRAGMA user_version = 99")
    for args in (["status"], ["enable"]):
        assert one_line(run(*args), 1) == (
            f"Error: {db_path}: written by a newer helios-telemetry (schema 99, this one "
            "knows 1); upgrade helios-telemetry"
        )


def test_a_folder_instead_of_a_file(run, tmp_path):
    for args in (["status"], ["enable"]):
        assert one_line(run(*args, db_path=tmp_path), 2) == (
            f"Error: {tmp_path} is a folder, not an outbox file; point --db (or "
            f"HELIOS_TELEMETRY_DB) at a file, for example {tmp_path / 'telemetry.db'}"
        )


def test_a_file_where_the_folder_should_be(run, tmp_path):
    blocker = tmp_path / "helios"
    blocker.write_text("not a folder")
    path = blocker / "deeper" / "telemetry.db"
    for args in (["status"], ["enable"], ["track", "command", "sync"]):
        assert one_line(run(*args, db_path=path, env=scenes.ON), 2) == (
            f"Error: {path}: {blocker} is a file, not a folder; point --db (or "
            "HELIOS_TELEMETRY_DB) at a path inside a folder"
        )


def test_missing_parent_folders(run, tmp_path):
    path = tmp_path / "not" / "yet" / "telemetry.db"
    assert run("status", db_path=path).exit_code == 0
    assert not (tmp_path / "not").exists()  # reads create nothing
    assert run("enable", db_path=path).exit_code == 0  # writes create folder and file
    assert path.is_file()


def test_empty_file_is_an_outbox_with_nothing_yet(run, db_path):
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    r = run("show")
    assert (r.exit_code, r.output) == (
        0,
        f"no outbox at {db_path} yet: telemetry has not collected anything\n",
    )
    assert db_path.stat().st_size == 0


def test_the_db_option_and_the_variable(run, outbox, tmp_path):
    outbox.track("command", "sync", 2)
    r = run("--db", outbox.path, "show", db_path=tmp_path / "elsewhere.db")
    assert r.output.splitlines()[1] == "command  sync        2          0"  # --db wins
    other = tmp_path / "other.db"
    assert run("show", db_path=other).output.startswith(f"no outbox at {other} yet")


# -- another user's outbox: read-only, unreadable -------------------------------------


@pytest.fixture(scope="module")
def installed() -> Iterator[Runtime]:
    """The ``outbox`` command installed where the other user can run it (not the clone,
    which may sit in a folder only its owner can enter)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop root privileges")
    try:
        runtime = Runtime.build()
    except Unavailable as e:
        pytest.skip(str(e))
    assert reachable(runtime.script("outbox"))
    yield runtime
    runtime.remove()


def _as_other_user(
    installed: Runtime, args: list[str], db_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``outbox`` script as a user who does not own the outbox."""
    return subprocess.run(
        as_other_user([str(installed.script("outbox")), "--db", str(db_path), *args]),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed.folder,
        env=child_env(HOME="/nonexistent"),
    )


@pytest.fixture
def foreign(make_telemetry: Callable[..., Telemetry]) -> Iterator[Path]:
    """An outbox in a folder this user may read but not write (as a service user's is)."""
    folder = Path(tempfile.mkdtemp(prefix="outbox-ro-"))
    path = folder / "telemetry.db"
    t = make_telemetry(db_path=path)
    t.track_command("sync", 3)
    t.close()  # the last connection: -wal and -shm are removed
    assert sorted(p.name for p in folder.iterdir()) == ["telemetry.db"]
    path.chmod(0o444)
    folder.chmod(0o555)
    yield path
    folder.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.parametrize("args", [["status"], ["show"], ["preview"], ["heartbeats"]], ids=" ".join)
def test_read_commands_work_on_a_read_only_outbox(installed, foreign, args):
    r = _as_other_user(installed, args, foreign)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    if args == ["show"]:
        assert r.stdout.splitlines()[1] == "command  sync        3          0"
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["telemetry.db"]


def test_write_commands_on_a_read_only_outbox_say_what_to_do(installed, foreign):
    r = _as_other_user(installed, ["enable"], foreign)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"Error: {foreign}: the outbox cannot be opened for writing (")
    assert r.stderr.endswith(
        "check that the file and its folder are writable by this user, or point "
        "HELIOS_TELEMETRY_DB at a writable path\n"
    )


def test_unreadable_outbox(installed, foreign):
    foreign.parent.chmod(0o755)
    foreign.chmod(0o600)
    r = _as_other_user(installed, ["status"], foreign)
    assert (r.returncode, r.stderr) == (
        1,
        f"Error: {foreign}: this user cannot read the outbox (permission denied); run the "
        "command as the user that runs Helios, or with sudo -u that user\n",
    )


def test_read_only_outbox_while_the_app_has_it_open(installed, foreign):
    """The app keeps -wal and -shm alive: another user reads through them, commits included."""
    foreign.parent.chmod(0o755)
    foreign.chmod(0o644)
    holder = db.connect(foreign)
    holder.execute("INSERT INTO events (kind, name, count, at) VALUES ('ui', 'bulk_edit', 1, 0)")
    try:
        r = _as_other_user(installed, ["show"], foreign)
    finally:
        holder.close()
    assert r.returncode == 0, r.stderr
    assert [line.split() for line in r.stdout.splitlines()[1:3]] == [
        ["command", "sync", "3", "0"],
        ["ui", "bulk_edit", "1", "0"],
    ]


def test_read_only_outbox_with_commits_only_in_its_wal_is_refused_clearly(
    installed, foreign, tmp_path
):
    """A -wal with commits but no -shm, in a folder we cannot write: reading the main file
    alone would miss those commits, so the command says what to do instead."""
    foreign.parent.chmod(0o755)
    foreign.chmod(0o644)
    holder = db.connect(foreign)
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("INSERT INTO events (kind, name, count, at) VALUES ('ui', 'bulk_edit', 1, 0)")
    wal = foreign.with_name(foreign.name + "-wal")
    saved = wal.read_bytes()
    main = foreign.read_bytes()
    holder.close()  # checkpoints and removes -wal and -shm; put the crash state back
    foreign.write_bytes(main)
    wal.write_bytes(saved)
    wal.chmod(0o644)
    foreign.parent.chmod(0o555)
    try:
        r = _as_other_user(installed, ["show"], foreign)
    finally:
        foreign.parent.chmod(0o755)
        wal.unlink()
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: {foreign}: the outbox cannot be opened for writing (")
    assert len(r.stderr.splitlines()) == 1


def test_default_path_without_db_or_variable(run, tmp_path):
    """No --db and no HELIOS_TELEMETRY_DB: $XDG_DATA_HOME/helios, else ~/.local/share/helios."""
    home_default = tmp_path / "home" / ".local" / "share" / "helios" / "telemetry.db"
    r = run("enable", env={"HELIOS_TELEMETRY_DB": None})
    assert r.output.splitlines()[0] == f"organisation setting: on (stored in {home_default})"
    assert home_default.is_file()
    xdg = tmp_path / "xdg"
    r = run("status", "--json", env={"HELIOS_TELEMETRY_DB": None, "XDG_DATA_HOME": str(xdg)})
    assert '"path": "' + str(xdg / "helios" / "telemetry.db") + '"' in r.stdout
