"""Opening the outbox: pragmas, schema, migrations, transactions.

Connections use stdlib ``sqlite3`` in autocommit mode (``isolation_level=None``):
a lone statement is its own transaction — what a track call wants — and
multi-statement changes use :func:`transaction` (``BEGIN IMMEDIATE``, so that a
writer queues on the busy timeout instead of failing on a lock upgrade).

Pragmas: WAL, ``synchronous=NORMAL`` (a commit survives the process being
killed; only a power cut can lose the last few), a bounded busy timeout,
foreign keys on, incremental auto-vacuum (so purge really gives bytes back), and
a large ``wal_autocheckpoint``: the worker checkpoints every maintenance tick, so
track calls do not pay for it, while the WAL stays bounded when no worker runs.
Limit: SQLite starts the WAL over only when a checkpoint has caught up with the
last commit, so several processes writing without pause (measured: 4 processes
at about 850 track calls/s each, 3,400/s in all) keep it growing until they
pause; at 400/s each it stays under about 40 MB. A TRUNCATE checkpoint with a
short wait rarely gets its turn then, and makes track calls wait. SQLite's default
threshold (1,000 pages) keeps the WAL near 4 MB at 400/s but puts a checkpoint in
one track call out of a few hundred (p99.9 5 ms instead of 0.3-1 ms for one
writer): ``benchmarks/wal_pressure.py`` measures the trade.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Final, TypeVar

from outbox.errors import OutboxCorrupt, OutboxMissing, SchemaMismatch, StorageError, translate

#: The version of the outbox file's tables (``PRAGMA user_version``); not the payload's.
OUTBOX_SCHEMA_VERSION: Final = 1

#: Forward migrations: ``{target_version: sql script}``, applied in order to outboxes
#: whose ``user_version`` is lower. ``schema.sql`` is always the newest full schema.
MIGRATIONS: dict[int, str] = {}

#: Seconds a statement waits for another writer before giving up.
DEFAULT_BUSY_TIMEOUT: Final = 0.5

#: Pages (4 KiB) the WAL may reach before a connection checkpoints it itself:
#: about 40 MB. The worker checkpoints long before this.
WAL_AUTOCHECKPOINT_PAGES: Final = 10_000


#: Bytes the WAL file is truncated to after a checkpoint resets it.
WAL_SIZE_LIMIT: Final = 4 * 1024 * 1024


def schema_sql() -> str:
    """The text of ``schema.sql``: shipped in the wheel, or at the top of a checkout."""
    shipped = resources.files("outbox").joinpath("schema.sql")
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def _create_file(path: Path) -> None:
    """Create the missing folders (each 0700) and an empty file (0600).

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file, so
    they are 0600 too. A file that already exists keeps its mode (``outbox status``
    warns when it is open to others).
    """
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None when there is none: tells whether
    another file now stands where the outbox was (moved aside, replaced)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def open_to_others(path: Path) -> list[tuple[Path, int]]:
    """The outbox's files that others may read or write: ``(path, mode)`` pairs."""
    found = []
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = p.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            found.append((p, mode))
    return found


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    create: bool = True,
    readonly: bool = False,
    wal_autocheckpoint: int = WAL_AUTOCHECKPOINT_PAGES,
    wal_size_limit: int | None = WAL_SIZE_LIMIT,
) -> sqlite3.Connection:
    """Open (and when needed create or migrate) the outbox at ``path``.

    :param create: create the file and its folder when missing; otherwise raise
        :class:`OutboxMissing`.
    :param readonly: open without write access (``mode=ro``); the schema is then
        only checked, not created.
    :param wal_size_limit: bytes the WAL file is truncated to when this connection starts
        it over; ``None`` for track calls: SQLite then skips a check that costs about
        2.5 µs per commit (``benchmarks/track_latency.py``), and the worker's connection,
        which restarts the WAL after its checkpoints, keeps the file small.
    :raises StorageError: (or a subclass) with what to do about it.
    """
    p = Path(path)
    if not p.exists():
        if not create or readonly:
            raise OutboxMissing(f"{p}: no outbox here yet; telemetry has not collected anything")
        try:
            _create_file(p)
        except OSError as e:
            raise StorageError(
                f"{p}: cannot create the outbox ({e.strerror}); make the folder writable "
                "or point HELIOS_TELEMETRY_DB at a writable path"
            ) from e
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{p.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                p, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
    except sqlite3.Error as e:
        raise translate(e, p) from e
    try:
        # Processes creating a new outbox at the same instant race for the WAL
        # switch, which returns "locked" without waiting: retry those steps.
        retry_busy(
            lambda: _configure(
                conn,
                readonly=readonly,
                wal_autocheckpoint=wal_autocheckpoint,
                wal_size_limit=wal_size_limit,
            ),
            timeout=busy_timeout,
        )
        retry_busy(lambda: ensure_schema(conn, readonly=readonly, path=p), timeout=busy_timeout)
    except sqlite3.Error as e:
        conn.close()
        if readonly and _wal_reader_cannot_start(e, p):
            return _connect_immutable(p, busy_timeout=busy_timeout)
        raise translate(e, p) from e
    except BaseException:
        conn.close()
        raise
    return conn


def _wal_reader_cannot_start(exc: sqlite3.Error, p: Path) -> bool:
    """A read-only open failed because the ``-shm`` file cannot be created (the folder
    is not writable by this user), and no ``-wal`` content exists to be missed."""
    wal = p.with_name(p.name + "-wal")
    return "readonly" in str(exc).lower() and (not wal.exists() or wal.stat().st_size == 0)


def _connect_immutable(p: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """Read an outbox in a folder we cannot write: an ``immutable`` open takes no locks
    and needs no ``-shm``. Exact while no ``-wal`` holds commits (checked by the caller);
    a writer starting meanwhile can make this one read fail, never change the file."""
    try:
        conn = sqlite3.connect(
            f"{p.resolve().as_uri()}?mode=ro&immutable=1",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as e:
        raise translate(e, p) from e
    try:
        ensure_schema(conn, readonly=True, path=p)
    except sqlite3.Error as e:
        conn.close()
        raise translate(e, p) from e
    except BaseException:
        conn.close()
        raise
    return conn


def _primary(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, whatever the extended code."""
    return _primary(exc) in (5, 6)


def is_transient(exc: sqlite3.Error) -> bool:
    """Busy, locked or a full disk: the same file works again later (no reopening)."""
    return _primary(exc) in (5, 6, 13)


T = TypeVar("T")


def retry_busy(fn: Callable[[], T], *, timeout: float) -> T:
    """Call ``fn`` until it does not fail with busy/locked, for at most ``timeout`` seconds.

    Polls every 0.1-2 ms with jitter: SQLite's own busy handler sleeps up to
    100 ms between tries, so a waiter can starve behind a few busy writers.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0001
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not is_busy(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.002)


def _configure(
    conn: sqlite3.Connection,
    *,
    readonly: bool,
    wal_autocheckpoint: int,
    wal_size_limit: int | None = WAL_SIZE_LIMIT,
) -> None:
    # Only reads on an existing outbox: setting auto_vacuum or journal_mode writes
    # the header, and a write here would queue behind every busy track call.
    if not readonly:
        if int(conn.execute("PRAGMA page_count").fetchone()[0]) == 0:
            # auto_vacuum only takes effect before the first table: new outboxes.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch the outbox to WAL (got {mode})")
    if not readonly:
        # Deleted rows leave no readable trace in b-tree pages (FAST: zeroed when that
        # costs no extra I/O); an opt-out turns it fully ON for its own deletions.
        conn.execute("PRAGMA secure_delete = FAST")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
    # After a checkpoint resets the WAL, truncate the file back to this size.
    limit = -1 if wal_size_limit is None else int(wal_size_limit)
    conn.execute(f"PRAGMA journal_size_limit = {limit}")


def ensure_schema(
    conn: sqlite3.Connection, *, readonly: bool = False, path: Path | None = None
) -> int:
    """Create the schema on a new outbox, or migrate an older one forward.

    Safe when several processes open a new outbox at once: the version is
    re-read under the write lock, and every statement of ``schema.sql`` is
    idempotent anyway.

    :returns: the schema version now in the file.
    :raises SchemaMismatch: when the file is newer than this code.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == OUTBOX_SCHEMA_VERSION:
        return version
    if version > OUTBOX_SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path or 'outbox'}: written by a newer helios-telemetry (schema {version}, this "
            f"one knows {OUTBOX_SCHEMA_VERSION}); upgrade helios-telemetry"
        )
    if readonly:
        if version == 0 and _is_empty(conn):
            raise OutboxMissing(
                f"{path}: the outbox is empty; telemetry has not collected anything"
            )
        raise SchemaMismatch(
            f"{path or 'outbox'}: schema {version} needs a migration to {OUTBOX_SCHEMA_VERSION}; "
            "run any write command (or the worker) once to migrate it"
        )
    # The version is read again under the write lock: a second process that raced
    # us here finds the schema made and changes nothing.
    with transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version >= OUTBOX_SCHEMA_VERSION:
            return version
        if version == 0 and not _is_empty(conn):
            raise OutboxCorrupt(
                f"{path or 'outbox'}: the file holds tables but no outbox schema version; "
                "it is not an outbox: point HELIOS_TELEMETRY_DB elsewhere, or move it aside"
            )
        if version == 0:
            scripts = [schema_sql()]
        else:
            scripts = [MIGRATIONS[v] for v in range(version + 1, OUTBOX_SCHEMA_VERSION + 1)]
        for script in scripts:
            _run_script(conn, script)
        conn.execute(f"PRAGMA user_version = {OUTBOX_SCHEMA_VERSION}")
    return OUTBOX_SCHEMA_VERSION


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run every statement of ``script`` inside the caller's transaction.

    ``executescript`` would commit first; stepping statement by statement with
    ``sqlite3.complete_statement`` keeps the script inside our ``BEGIN IMMEDIATE``.
    """
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            conn.execute(buffer)
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of the script: {buffer.strip()!r}")


def _is_empty(conn: sqlite3.Connection) -> bool:
    return int(conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]) == 0


def begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock at most the connection's busy timeout.

    The wait polls like :func:`retry_busy` instead of SQLite's own busy handler,
    which sleeps up to 100 ms between tries: behind a few track calls that poll
    every 2 ms, the worker's transactions would otherwise starve until they fail.
    """
    ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    if ms == 0:
        conn.execute("BEGIN IMMEDIATE")
        return
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), timeout=ms / 1000)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {ms:d}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (see :func:`begin_immediate`) … ``COMMIT``; rolls back on any
    exception."""
    begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
