"""The outbox file: pragmas, schema, constraints, migrations, and clear errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from outbox import OutboxCorrupt, OutboxMissing, SchemaMismatch, Telemetry, db

ROOT = Path(__file__).resolve().parents[2]


def test_new_outbox_pragmas_and_tables(db_path: Path) -> None:
    conn = db.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.OUTBOX_SCHEMA_VERSION
        assert (
            conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == db.WAL_AUTOCHECKPOINT_PAGES
        )
    finally:
        conn.close()
    with sqlite3.connect(db_path) as c:
        tables = {n for (n,) in c.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {
        "events",
        "heartbeats",
        "meta",
        "dropped",
        "organization_settings",
        "worker_lease",
    } <= tables
    assert oct(db_path.stat().st_mode & 0o777) == "0o600"
    assert oct(db_path.parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("web", "x", 1, 1)),
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("api", "", 1, 1)),
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("api", "x" * 65, 1, 1)),
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("api", "x", 0, 1)),
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("api", "x", 1.5, 1)),
        ("INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", ("api", "x", 1, "now")),
        ("INSERT INTO dropped (reason) VALUES (?)", ("because",)),
        ("INSERT INTO organization_settings VALUES (?, ?, ?)", ("telemetry_enabled", "yes", 1)),
        ("INSERT INTO worker_lease VALUES (?, ?, ?, ?, ?)", (2, "h:1", 1, 1, 1)),
        (
            "INSERT INTO heartbeats (id, sequence, first_event_id, last_event_id, period_start, "
            "period_end, payload, payload_sha256, status, sealed_at) "
            "VALUES ('a', 1, 0, 1, 's', 'e', x'00', ?, 'lost', 1)",
            ("0" * 64,),
        ),
        (
            "INSERT INTO heartbeats (id, sequence, first_event_id, last_event_id, period_start, "
            "period_end, payload, payload_sha256, status, sealed_at, settled_at) "
            "VALUES ('a', 1, 0, 1, 's', 'e', x'00', ?, 'pending', 1, 5)",
            ("0" * 64,),
        ),
    ],
)
def test_check_constraints_refuse_bad_rows(conn: sqlite3.Connection, sql: str, params) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(sql, params)


def test_at_most_one_pending_heartbeat(conn: sqlite3.Connection) -> None:
    sql = (
        "INSERT INTO heartbeats (id, sequence, first_event_id, last_event_id, period_start, "
        "period_end, payload, payload_sha256, sealed_at) VALUES (?, ?, 0, 0, 's', 'e', x'00', ?, 1)"
    )
    conn.execute(sql, ("a", 1, "0" * 64))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(sql, ("b", 2, "0" * 64))


def test_reopening_is_idempotent_and_writes_nothing(db_path: Path) -> None:
    db.connect(db_path).close()
    before = db_path.read_bytes()
    for _ in range(3):
        conn = db.connect(db_path)
        conn.close()
    assert db_path.read_bytes() == before


def test_a_newer_outbox_is_refused_with_the_fix(db_path: Path) -> None:
    conn = db.connect(db_path)
    conn.execute(f"PRAGMA user_version = {db.OUTBOX_SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaMismatch, match="newer helios-telemetry.*upgrade helios-telemetry"):
        db.connect(db_path)


def test_forward_migrations_run_in_order(db_path: Path, monkeypatch) -> None:
    db.connect(db_path).close()
    monkeypatch.setattr(db, "OUTBOX_SCHEMA_VERSION", 3)
    monkeypatch.setattr(
        db,
        "MIGRATIONS",
        {
            2: "CREATE TABLE extra (id INTEGER PRIMARY KEY);",
            3: "ALTER TABLE extra ADD COLUMN note TEXT;\nINSERT INTO extra (note) VALUES ('v3');",
        },
    )
    conn = db.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("SELECT note FROM extra").fetchall() == [("v3",)]
    finally:
        conn.close()


def test_read_only_open_of_a_missing_outbox_does_not_create_it(db_path: Path) -> None:
    with pytest.raises(OutboxMissing, match="not collected anything"):
        db.connect(db_path, readonly=True)
    with pytest.raises(OutboxMissing):
        db.connect(db_path, create=False)
    assert not db_path.exists() and not db_path.parent.exists()


def test_garbage_and_foreign_databases_are_reported_as_corrupt(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(OutboxCorrupt, match="mv .*corrupt"):
        db.connect(garbage)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(OutboxCorrupt, match="no outbox schema version"):
        db.connect(foreign)


def test_scripts_run_statement_by_statement_in_one_transaction(conn: sqlite3.Connection) -> None:
    script = """
    -- a comment
    CREATE TABLE a (x);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        INSERT INTO a VALUES (1);
        INSERT INTO a VALUES (2);
    END;
    INSERT INTO a VALUES (0);
    """
    with db.transaction(conn):
        db._run_script(conn, script)
        assert conn.in_transaction  # nothing committed behind our back
    assert sorted(x for (x,) in conn.execute("SELECT x FROM a")) == [0, 1, 2]
    with pytest.raises(ValueError, match="incomplete"):
        db._run_script(conn, "CREATE TABLE b (x)")


def test_schema_is_read_from_the_top_level_file() -> None:
    assert db.schema_sql() == (ROOT / "schema.sql").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_wheel_ships_the_schema(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("helios_telemetry-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "outbox/schema.sql" in names
        assert z.read("outbox/schema.sql").decode() == (ROOT / "schema.sql").read_text()
        assert {"outbox/py.typed", "worker/py.typed"} <= names


def test_a_new_outbox_and_its_folders_are_private(tmp_path: Path) -> None:
    """Made by telemetry: every folder it creates 0700, the file and its -wal and -shm 0600."""
    path = tmp_path / "a" / "b" / "c" / "telemetry.db"
    t = Telemetry(db_path=path, enabled=True, environ={})
    assert t.track_api_call("users.list")
    try:
        for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
        for suffix in ("", "-wal", "-shm"):
            f = path.with_name(path.name + suffix)
            assert f.stat().st_mode & 0o777 == 0o600, f
        assert db.open_to_others(path) == []
    finally:
        t.close()


def test_an_existing_open_file_keeps_its_mode_and_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    db.connect(path).close()
    path.chmod(0o644)
    t = Telemetry(db_path=path, enabled=True, environ={})
    assert t.track_api_call("users.list")
    try:
        assert path.stat().st_mode & 0o777 == 0o644  # the operator's choice is not overridden
        assert (path, 0o644) in db.open_to_others(path)
    finally:
        t.close()


def test_a_transaction_gets_the_write_lock_between_busy_track_calls(db_path: Path) -> None:
    """Three processes track as fast as they can (polling for the lock every 2 ms at most);
    a transaction with a 1 s busy timeout still gets in every time. With SQLite's own busy
    handler, which sleeps up to 100 ms between tries, about one in seven timed out here."""
    db.connect(db_path).close()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.core.procs",
                "track",
                str(db_path),
                "200000",
                "command",
                "sync",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    conn = db.connect(db_path, busy_timeout=1.0)
    try:
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM events").fetchone()[0] < 1000:
            assert time.monotonic() < deadline, "the writers did not start"
            time.sleep(0.01)  # the writers are at full speed
        failed = taken = 0
        for _ in range(30):
            try:
                with db.transaction(conn):
                    conn.execute(
                        "INSERT INTO events (kind, name, count, at) VALUES ('ui', 'x', 1, 0)"
                    )
                taken += 1
            except sqlite3.OperationalError as e:
                assert db.is_busy(e)
                failed += 1
            time.sleep(0.01)
        assert all(w.poll() is None for w in writers), "the writers stopped before the end"
        assert (taken, failed) == (30, 0)
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1000  # put back
    finally:
        for w in writers:
            w.kill()
            w.wait()
        conn.close()


def test_a_transaction_waits_its_busy_timeout_then_fails_busy(db_path: Path) -> None:
    holder = db.connect(db_path)
    conn = db.connect(db_path, busy_timeout=0.2)
    try:
        holder.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError) as e:
            with db.transaction(conn):
                pass
        waited = time.monotonic() - t0
        assert db.is_busy(e.value) and not conn.in_transaction
        assert 0.2 <= waited < 2.0
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 200  # put back
        holder.execute("COMMIT")
        with db.transaction(conn):
            conn.execute("INSERT INTO events (kind, name, count, at) VALUES ('ui', 'x', 1, 0)")
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    finally:
        holder.close()
        conn.close()
