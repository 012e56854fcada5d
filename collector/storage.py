"""The collector's storage: one class, the same code on SQLite and PostgreSQL.

:class:`Storage` owns the SQLAlchemy engines and runs every operation in one
transaction (what the transactions do is in :mod:`collector.records`):
:meth:`Storage.ingest`, :meth:`Storage.forget`, :meth:`Storage.instance`, and
:meth:`Storage.read` for the insights.

SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` behind a :class:`WriterLock`
(threads, then ``flock`` across processes) so that writers queue instead of failing
with "database is locked"; a lock held by another process for longer than the timeout
is :class:`StorageBusy`. The writer
never checkpoints inline (``wal_autocheckpoint=0``): a :class:`Checkpointer` thread
copies the WAL into the database beside it, so a batch's commit costs its own fsync
and nothing more; only a WAL past :data:`WAL_HARD_LIMIT` bytes makes the writer
checkpoint itself. PostgreSQL:
psycopg 3, and a transaction that lost a race (deadlock, serialization failure,
:class:`~collector.records.RaceLost`) runs again. ``sqlalchemy`` and driver errors
are translated into :mod:`collector.errors` here: nothing above sees them, nor any
other exception a driver raises (an ``OverflowError`` binding a parameter, say).

A SQLite database and its ``-wal`` and ``-shm`` files are made private (0600: they
hold instance ids and credential hashes), and so is a folder created for them (0700).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa

from collector import records, schema
from collector.bulk import Statements
from collector.errors import CollectorError, StorageBusy, StorageError
from collector.records import Folded, Forgotten, InstanceInfo, Outcome, RaceLost
from collector.validate import Heartbeat

log = logging.getLogger(__name__)

T = TypeVar("T")

#: PostgreSQL SQLSTATEs worth retrying the whole transaction for.
_RETRY_SQLSTATES: Final = frozenset({"40001", "40P01"})
_ATTEMPTS: Final = 8


def _back_off(attempt: int) -> None:
    """Wait a little before running a lost transaction again: a random 0-2 ms times the
    attempt, so that two writers that keep meeting (collector processes creating the
    same new instances) stop meeting."""
    time.sleep(random.random() * 0.002 * attempt)


def database_url(target: str | Path) -> sa.URL:
    """``postgresql://…`` (driven by psycopg 3), ``sqlite:///…``, or a plain file path."""
    text = str(target)
    if "://" not in text:
        return sa.URL.create("sqlite+pysqlite", database=str(Path(text).expanduser().resolve()))
    url = sa.make_url(text)
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite+pysqlite")
    raise StorageError(
        f"unsupported database URL scheme {url.drivername!r}: give a file path, "
        "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


#: The files of a SQLite database: only its owner may read them.
PRIVATE_FILE: Final = 0o600
PRIVATE_FOLDER: Final = 0o700


def make_private(path: Path) -> None:
    """Create the SQLite file 0600 if missing (its folder 0700), and make the database's
    files that exist 0600 (SQLite gives ``-wal`` and ``-shm`` the database's mode)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, PRIVATE_FILE))
    for suffix in ("", "-wal", "-shm", "-journal", "-writer.lock"):
        try:
            os.chmod(f"{path}{suffix}", PRIVATE_FILE)
        except FileNotFoundError:
            pass
        except PermissionError:  # another user's file we may write: say so, go on
            log.warning("cannot make %s%s private (chmod 600): not its owner", path, suffix)


#: Seconds between background checkpoints while writes go on.
CHECKPOINT_INTERVAL: Final = 0.25
#: A WAL larger than this (bytes) is checkpointed by the writer itself (RESTART), so that
#: the file stays bounded when the background checkpoints cannot catch up.
WAL_HARD_LIMIT: Final = 256 * 1024 * 1024


class WriterLock:
    """The writers of every collector process on one SQLite file, one at a time: a lock
    for this process's threads, then ``flock`` on ``<database>-writer.lock``.

    SQLite's own busy handler, when two processes both want to write, sleeps in steps of
    up to 100 ms; a lock released here is taken within half a millisecond, so processes
    sharing the file (``--workers``) take turns without idling. Waiting longer than the
    busy timeout is :class:`StorageBusy`. The kernel drops the lock of a process that
    dies. Writers that do not use it (another program) are still kept out by SQLite.
    """

    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._threads = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, PRIVATE_FILE)
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StorageBusy(
                            "another collector process has been writing to the SQLite "
                            f"database for more than {self.timeout:g} s"
                        ) from None
                    time.sleep(0.0005)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection and thread, at most
    every :data:`CHECKPOINT_INTERVAL` seconds after a write (:meth:`written`).

    A passive checkpoint never waits for the writer or a reader, and its fsync of the
    database file happens here, not in the commit of the batch that filled the WAL.
    """

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def written(self) -> None:
        """A write transaction committed: checkpoint soon."""
        if self._thread is None:
            with self._guard:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(
                        target=self._run, name="collector-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as e:  # the next write tries again
                    log.warning("background checkpoint failed: %s", e)
                if self._stop:
                    return
                time.sleep(CHECKPOINT_INTERVAL)
        finally:
            conn.close()


def _wal(cur: sqlite3.Cursor, timeout: float) -> None:
    """Switch a SQLite file to WAL (once; it sticks).

    Two processes opening a new file at the same moment may both try, and SQLite
    answers "locked" to one of them at once, without waiting for the busy timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Storage:
    """The collector's database.

    :param target: a SQLite file path (created with its folder), ``sqlite:///PATH``
        or ``postgresql://USER:PASSWORD@HOST:PORT/DB``.
    :param busy_timeout: seconds a SQLite writer waits for another process's lock
        before giving up with :class:`StorageBusy` (answered as 503).
    :param synchronous: SQLite's ``synchronous`` pragma; ``FULL`` makes an
        accepted heartbeat survive a power cut (commits are batched, so this is cheap).
    :param pool_size: PostgreSQL connections kept open.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        busy_timeout: float = 5.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        pool_size: int = 8,
    ) -> None:
        self.url = database_url(target)
        self.dialect: Literal["sqlite", "postgresql"] = (
            "sqlite" if self.url.drivername.startswith("sqlite") else "postgresql"
        )
        self._sql = Statements(self.dialect)
        self._lock: contextlib.AbstractContextManager[Any]
        if self.dialect == "sqlite":
            path = Path(self.url.database or "")
            try:
                make_private(path)
            except OSError as e:
                raise StorageError(
                    f"cannot create {path} with private permissions: {e.strerror or e}"
                ) from e
            self._writer = self._sqlite_engine(
                busy_timeout, synchronous, "BEGIN IMMEDIATE", 1, autocheckpoint=0
            )
            self._reader = self._sqlite_engine(busy_timeout, synchronous, "BEGIN", 4)
            self._lock = WriterLock(f"{path}-writer.lock", timeout=busy_timeout)
            self._wal_path: str | None = f"{path}-wal"
            self._checkpointer: Checkpointer | None = Checkpointer(
                str(path), busy_timeout=busy_timeout
            )
        else:
            self._writer = sa.create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
            self._reader = self._writer
            self._lock = contextlib.nullcontext()
            self._wal_path = None
            self._checkpointer = None

    def _sqlite_engine(
        self,
        busy_timeout: float,
        synchronous: str,
        begin: str,
        pool_size: int,
        *,
        autocheckpoint: int = 1000,
    ) -> sa.Engine:
        engine = sa.create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=4,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
        )

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _wal(cur, busy_timeout)
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @property
    def display_url(self) -> str:
        """Where the data lives, for people: the SQLite file, or the URL without its password."""
        if self.dialect == "sqlite":
            return f"{self.url.database} (SQLite)"
        shown = self.url.set(drivername="postgresql").render_as_string(hide_password=True)
        return f"{shown} (PostgreSQL)"

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if isinstance(self._lock, WriterLock):
            self._lock.close()
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    # -- transactions ---------------------------------------------------------------

    def _run(self, engine: sa.Engine, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction, retrying lost races; translate driver errors."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._lock if write else contextlib.nullcontext():
                    with engine.begin() as conn:
                        result = fn(conn)
                    if write and self._checkpointer is not None:
                        self._after_commit()
                    return result
            except RaceLost:
                if attempt == _ATTEMPTS:
                    raise StorageBusy("the database stayed contended; try again") from None
                _back_off(attempt)
            except sa.exc.DBAPIError as e:
                sqlstate = getattr(e.orig, "sqlstate", None)
                if sqlstate in _RETRY_SQLSTATES and attempt < _ATTEMPTS:
                    log.info("retrying a transaction after SQLSTATE %s", sqlstate)
                    _back_off(attempt)
                    continue
                raise self._translate(e) from e
            except sa.exc.SQLAlchemyError as e:
                raise StorageError(f"database error: {type(e).__name__}: {e}") from e
            except CollectorError:
                raise
            except Exception as e:  # a driver's own (OverflowError binding a value, …)
                log.exception("a database operation failed unexpectedly")
                raise StorageError(f"database error: {type(e).__name__}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _after_commit(self) -> None:
        """Hand the checkpoint to the background thread; past the hard limit, checkpoint
        here (still under the writer lock, so no batch of ours grows the WAL meanwhile)."""
        assert self._checkpointer is not None and self._wal_path is not None
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            size = 0
        if size > WAL_HARD_LIMIT:
            log.info("the WAL is %d MiB: checkpointing before the next batch", size >> 20)
            raw = self._writer.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()  # type: ignore[union-attr]
            finally:
                raw.close()
        self._checkpointer.written()

    def _translate(self, e: sa.exc.DBAPIError) -> StorageError:
        text = str(e.orig)
        low = text.lower()
        if self.dialect == "sqlite" and ("locked" in low or "busy" in low):
            return StorageBusy(f"the SQLite database is locked by another process: {text}")
        if getattr(e.orig, "sqlstate", None) in _RETRY_SQLSTATES:
            return StorageBusy(f"the database stayed contended: {text}")
        if isinstance(e, sa.exc.OperationalError) and self.dialect == "postgresql":
            return StorageBusy(f"cannot use PostgreSQL at {self.display_url}: {text}")
        return StorageError(f"database error: {text}")

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` in one snapshot."""
        return self._run(self._reader, fn, write=False)

    def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction (serialized on SQLite)."""
        return self._run(self._writer, fn, write=True)

    def migrate(self, *, now: int) -> int:
        """Create or upgrade the schema; returns the version found (0 = new database).

        :raises collector.errors.SchemaTooNew: the database belongs to a newer collector.
        :raises StorageError: the database cannot be reached or written.
        """
        return self.write(lambda conn: schema.migrate(conn, now=now))

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            self.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        except StorageError:
            return False
        return True

    # -- the operations -----------------------------------------------------------------

    def ingest(self, batch: Sequence[Heartbeat], *, now: int) -> list[Outcome]:
        """Record ``batch`` in one transaction; one :class:`Outcome` per item, in order.

        The same ``heartbeat_id`` twice in one batch behaves as if sent one after
        the other: the first may be accepted, the rest are duplicates or conflicts.
        """
        if not batch:
            return []
        return self.write(lambda conn: records.ingest(conn, self._sql, batch, now))

    def forget(self, instance_id: str, *, credential: str | None = None) -> Forgotten | None:
        """Delete ``instance_id`` and subtract exactly its counts, in one transaction.

        :param credential: the hash of the secret the request came with (the HTTP routes
            always pass it); ``None`` is the operator (the command line, tests), who
            needs none.
        :returns: what was removed, or ``None`` for an instance never seen.
        :raises collector.errors.Unauthorized: not the instance's secret.
        """
        return self.write(lambda conn: records.forget(conn, self._sql, instance_id, credential))

    def fold(self, *, before: int, chunk: int = 500) -> Folded:
        """Fold the bodies of every heartbeat received before ``before`` (unix seconds)
        into per-instance day rows (:func:`collector.records.fold`), ``chunk`` heartbeats
        per transaction so that ingest waits for one chunk at most."""
        heartbeats, rows = 0, set()
        while True:
            n, written = self.write(lambda conn: records.fold(conn, self._sql, before, chunk))
            heartbeats += n
            rows |= written
            if n < chunk:
                return Folded(heartbeats, len({iid for iid, _ in rows}), len(rows))

    def instance(
        self, instance_id: str, *, credential: str | None = None, max_gaps: int = 1000
    ) -> InstanceInfo | None:
        """What the collector holds about one instance, or ``None``.

        :param credential: as for :meth:`forget`.
        :raises collector.errors.Unauthorized: not the instance's secret.
        """
        return self.read(
            lambda conn: records.instance_info(
                conn, instance_id, max_gaps=max_gaps, credential=credential
            )
        )

    def instances(self) -> list[InstanceInfo]:
        """Every instance, most recently seen first (the operator's list)."""
        return self.read(records.instance_list)

    def names_of(self, instance_id: str) -> list[tuple[str, str, str, str]]:
        """(kind, name, first day, last day) of every name an instance reported
        (the operator's view: never public)."""
        return self.read(lambda conn: records.instance_names(conn, instance_id))


__all__ = ["Folded", "Forgotten", "InstanceInfo", "Outcome", "Storage", "database_url"]
