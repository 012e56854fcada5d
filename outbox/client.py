"""``Telemetry``, the client: what the Helios backend calls on every relayed request.

A track call validates the name, appends one row and commits — one SQLite
statement, so it is durable when the call returns. It never raises: what cannot
be stored is counted (``invalid_name``, ``storage_error``, ``over_capacity``) and
reported in the next heartbeat's ``dropped``. It never blocks longer than the
busy timeout. It starts no thread.

The insert is conditional on the organisation setting *in the same statement*,
so a track call racing ``outbox disable`` is either discarded with the rest or
not written at all: nothing collected before an opt-out is sent after it.

Fork safety: a connection opened before ``fork()`` is never used (nor closed:
closing it could checkpoint the parent's WAL) in the child; the child opens its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from outbox import consent, db, health, heartbeats, store
from outbox.config import Config, Decision
from outbox.consent import Switched
from outbox.contract import DROP_REASONS, KINDS, MAX_COUNT, DropReason, Kind, is_valid_name
from outbox.errors import OutboxBusy, OutboxError, OutboxMissing, translate
from outbox.health import WorkerHealth
from outbox.store import ADD_DROP_IF_ON, INSERT_EVENT, Meta

log = logging.getLogger("outbox")

_KINDS: Final = frozenset(KINDS)

#: Size of the outbox file past which track calls stop appending and count
#: ``over_capacity`` instead (checked every :data:`SIZE_CHECK_EVERY` writes). The
#: worker's compaction and size cap keep a healthy outbox far below it; this is
#: the backstop when no worker runs.
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
SIZE_CHECK_EVERY: Final = 4096

#: Every this many writes a track call checks that the outbox file is still the
#: one it has open (the worker moves a corrupt outbox aside and recreates it).
FILE_CHECK_EVERY: Final = 256

#: After the outbox could not be opened (or, off by default, did not exist), wait
#: this long before looking again: one failed open per second, not one per call.
REOPEN_AFTER: Final = 1.0

# Connections inherited through fork(): kept referenced so that the child never
# closes (and so never checkpoints or unlinks) the parent's WAL.
_inherited: list[sqlite3.Connection] = []
_instances: weakref.WeakSet[Telemetry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for t in list(_instances):
        t._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _wall_clock() -> float:
    # Looked up at each call, not bound at definition: freezegun can patch it.
    return time.time()


class _Unavailable(Exception):
    """The outbox could not be opened (the message says why)."""


class Telemetry:
    """Usage counters of one Helios instance, stored in its outbox.

    Nothing happens at construction: the environment is read and the outbox is
    opened on first use.

    :param db_path: the outbox file; default ``HELIOS_TELEMETRY_DB``, else
        ``~/.local/share/helios/telemetry.db``.
    :param enabled: ``True``/``False``/``"local"`` to decide here instead of
        ``HELIOS_TELEMETRY_ENABLED`` (``False`` locks telemetry off, like the variable).
        ``DO_NOT_TRACK`` is honoured either way.
    :param environ: the environment to read (default ``os.environ``).
    :param clock: unix seconds (default :func:`time.time`, looked up per call); stamps each event.
    :param busy_timeout: seconds a track call waits for another writer at most.
    :param max_bytes: outbox size past which new events are counted, not stored.
    :param new_id: makes the instance id (default: a random UUID4).
    :param monotonic: the clock that paces re-opening a broken outbox.
    """

    def __init__(
        self,
        *,
        db_path: str | os.PathLike[str] | None = None,
        enabled: bool | str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        busy_timeout: float = db.DEFAULT_BUSY_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db_path = db_path
        self._enabled_arg = enabled
        self._environ = environ
        self._clock = clock or _wall_clock
        self._busy_timeout = busy_timeout
        self._max_bytes = max_bytes
        self._new_id = new_id
        self._monotonic = monotonic
        self._cfg: Config | None = None
        self._off: bool | None = None  # locked off by the environment (None: not read yet)
        self._assumed = "false"  # what the INSERT assumes when the organisation never chose
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        self._open_error = ""
        self._inode: tuple[int, int] | None = None
        self._writes = 0
        self._full = False
        self._unstored: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._worker_warned = False
        #: The last storage or configuration problem met by a track call, or None.
        self.last_error: str | None = None
        _instances.add(self)

    # -- configuration ----------------------------------------------------------------

    def _config(self) -> Config:
        cfg = self._cfg
        if cfg is None:
            cfg = self._cfg = Config.from_env(
                self._environ, db_path=self._db_path, enabled=self._enabled_arg
            )
            problem = cfg.enabled_problem
            if problem is not None:
                self._note(problem.message)  # off, and said once, the same words everywhere
            self._assumed = cfg.assumed
            self._off = cfg.locked_off
        return cfg

    @property
    def config(self) -> Config:
        """The configuration this instance read (on first use) from its environment."""
        return self._config()

    @property
    def db_path(self) -> Path:
        """The outbox file this instance writes to."""
        return self._config().db_path

    # -- the hot path -----------------------------------------------------------------

    def track_api_call(self, name: str, count: int = 1) -> bool:
        """Count one API call, e.g. ``users.list`` (the web middlewares name it from a route)."""
        return self.track("api", name, count)

    def track_command(self, name: str, count: int = 1) -> bool:
        """Count one command run, e.g. ``sync`` or ``users.import``."""
        return self.track("command", name, count)

    def track_ui_action(self, name: str, count: int = 1) -> bool:
        """Count one UI action, e.g. ``bulk_edit``."""
        return self.track("ui", name, count)

    def track(self, kind: Kind, name: str, count: int = 1) -> bool:
        """Append one event; never raises.

        :returns: True when the event was stored, False when it was not (telemetry
            off, or dropped and counted).
        """
        # The hot path: what the configuration says is read once (``_off``, ``_assumed``);
        # a fork is handled by the at-fork hook, not by a getpid() per call.
        try:
            if self._off is None:
                self._config()
            if self._off:
                return False
            if not (
                type(count) is int
                and 1 <= count <= MAX_COUNT
                and kind in _KINDS
                and is_valid_name(name)
            ):
                self.count_dropped("invalid_name")
                return False
            at = int(self._clock())
            with self._lock:
                conn = self._conn or self._open(self._config())
                if conn is None:
                    return False
                if self._full:
                    self._write(conn, ADD_DROP_IF_ON, (count, "over_capacity", self._assumed))
                    stored = False
                else:
                    row = (kind, name, count, at, self._assumed)
                    try:
                        stored = conn.execute(INSERT_EVENT, row).rowcount == 1
                    except sqlite3.OperationalError as e:
                        if not db.is_busy(e):
                            raise
                        stored = self._write(conn, INSERT_EVENT, row) == 1
                self._writes += 1
                if self._unstored or not self._writes % FILE_CHECK_EVERY:
                    try:
                        self._housekeeping(conn, self._config())
                    except sqlite3.Error as e:
                        # The write is done and its outcome stands: only the rare work after
                        # it failed (what it did not do is tried after the next write).
                        # Counting the event as lost here would count it twice.
                        self._note(f"after a write: {translate(e, self._config().db_path)}")
                return stored
        except (sqlite3.Error, _Unavailable) as e:
            self._storage_failed(e, count if type(count) is int and count > 0 else 1)
        except Exception as e:  # never into the caller  # noqa: BLE001
            self._storage_failed(e, 1)
        return False

    def count_dropped(self, reason: DropReason, n: int = 1) -> None:
        """Count ``n`` things that could not be recorded (e.g. ``unknown_name``); never raises."""
        if reason not in DROP_REASONS or type(n) is not int or n <= 0:
            return
        try:
            cfg = self._config()
            if self._off:
                return
            with self._lock:
                conn = self._conn or self._open(cfg)
                if conn is None:
                    return
                self._write(conn, ADD_DROP_IF_ON, (n, reason, cfg.assumed))
        except Exception as e:  # noqa: BLE001
            self._unstored[reason] += n
            self._storage_failed(e, 0)

    def _write(self, conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
        """Run one write statement, waiting at most the busy timeout for the lock."""
        try:
            return conn.execute(sql, params).rowcount
        except sqlite3.OperationalError as e:
            if not db.is_busy(e):
                raise
        return db.retry_busy(lambda: conn.execute(sql, params).rowcount, timeout=self._busy_timeout)

    def _open(self, cfg: Config) -> sqlite3.Connection | None:
        """Open the outbox for track calls; None when there is nothing to do."""
        if self._monotonic() < self._retry_at:
            raise _Unavailable(self._open_error)
        if cfg.assumed == "false" and not cfg.db_path.exists():
            # Off by default and no outbox: there cannot be an organisation "on". Looked
            # at on every call (a stat, about 1 µs): an outbox another process creates
            # when an administrator switches sharing on counts this process's next call.
            return None
        try:
            conn = db.connect(cfg.db_path, busy_timeout=self._busy_timeout, wal_size_limit=None)
        except OutboxBusy as e:
            raise _Unavailable(str(e)) from e  # transient: try again on the next call
        except OutboxError as e:
            self._open_error = str(e)
            self._retry_at = self._monotonic() + REOPEN_AFTER
            raise _Unavailable(str(e)) from e
        conn.execute("PRAGMA busy_timeout = 0")  # _write does the waiting
        self._conn = conn
        self._pid = os.getpid()
        self._inode = db.file_identity(cfg.db_path)
        self._full = self._over_size(conn)
        self._on_open(conn, cfg)
        return conn

    def _on_open(self, conn: sqlite3.Connection, cfg: Config) -> None:
        """Once per opened connection: say what decided this writer's state, so that a
        worker with another environment can show the disagreement; warn once when no
        worker sends. Best effort: a failure here never fails the track call."""
        try:
            decision = cfg.decision(store.org_enabled(conn))
            if cfg.enabled is not None and decision.collecting:
                writers = {"mode": decision.mode, "source": decision.source}
                stored = store.get_json(conn, Meta.WRITERS) or {}
                if {k: stored.get(k) for k in writers} != writers:
                    store.put(conn, Meta.WRITERS, {**writers, "at": int(self._clock())})
            if not self._worker_warned:
                state = health.read(
                    conn, now=int(self._clock()), decision=decision, edition=cfg.edition
                )
                if state.message is not None:
                    self._worker_warned = True
                    log.warning("telemetry: %s", state.message)
        except sqlite3.Error:
            pass

    def _housekeeping(self, conn: sqlite3.Connection, cfg: Config) -> None:
        """Rare work after a write (caller holds the lock): store earlier losses,
        follow a replaced outbox file, re-check the size cap. What fails stays to do."""
        for reason, n in list(self._unstored.items()):
            if n:
                conn.execute(ADD_DROP_IF_ON, (n, reason, cfg.assumed))
            del self._unstored[reason]
        if self._writes % FILE_CHECK_EVERY == 0 and db.file_identity(cfg.db_path) != self._inode:
            self._conn = None  # replaced or moved away: reopen the file at the path next call
            conn.close()
            return
        if self._writes % SIZE_CHECK_EVERY == 0:
            self._full = self._over_size(conn)

    def _over_size(self, conn: sqlite3.Connection) -> bool:
        pages, size = conn.execute(
            "SELECT * FROM pragma_page_count(), pragma_page_size()"
        ).fetchone()
        full = bool(int(pages) * int(size) > self._max_bytes)
        if full:
            self._note(
                f"{self._config().db_path}: the outbox is over {self._max_bytes} bytes; "
                "new events are counted as over_capacity until the worker compacts it"
            )
        return full

    def _storage_failed(self, exc: BaseException, lost: int) -> None:
        if lost:
            self._unstored["storage_error"] += lost
        if isinstance(exc, _Unavailable):
            text = str(exc)
        elif isinstance(exc, sqlite3.Error | OSError):
            text = str(translate(exc, self._config().db_path))  # the message names the fix
        else:
            text = f"{type(exc).__name__}: {exc}"
        self._note(text)
        if isinstance(exc, _Unavailable) or (
            isinstance(exc, sqlite3.Error) and db.is_transient(exc)
        ):
            return
        # A broken file (corrupt, replaced, read-only): reopen later, not on every
        # call — at once if another file now stands at the path.
        with self._lock:
            conn, self._conn = self._conn, None
            self._open_error = text
            replaced = conn is not None and db.file_identity(self._config().db_path) != self._inode
            self._retry_at = 0.0 if replaced else self._monotonic() + REOPEN_AFTER
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                conn.close()

    def _note(self, text: str) -> None:
        self.last_error = text
        key = text[:80]
        if key not in self._logged and len(self._logged) < 100:
            self._logged.add(key)
            log.warning("telemetry: %s (counted, not raised)", text)

    def _forget_parent(self) -> None:
        """In a forked child: never touch the parent's connection, lock or unsaved counts."""
        if self._conn is not None:
            _inherited.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._unstored = Counter()
        self._pid = os.getpid()

    @property
    def unstored(self) -> dict[str, int]:
        """Losses this process has counted but not yet written (the outbox was unavailable)."""
        return dict(self._unstored)

    # -- settings and identity ----------------------------------------------------------

    @contextlib.contextmanager
    def connect(
        self, *, create: bool = True, readonly: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """A separate, short-lived connection for operations (not the track-call one).

        :raises OutboxError: when the outbox cannot be used, saying what to do.
        """
        conn = db.connect(
            self.db_path,
            busy_timeout=max(self._busy_timeout, 5.0),
            create=create,
            readonly=readonly,
        )
        try:
            yield conn
        finally:
            conn.close()

    def decision(self) -> Decision:
        """The effective state and what decided it (DESIGN.md section 3); never raises."""
        cfg = self._config()
        org: bool | None = None
        if not cfg.locked_off:
            try:
                with self.connect(create=False, readonly=True) as conn:
                    org = store.org_enabled(conn)
            except OutboxMissing:
                org = None
            except OutboxError as e:
                self._note(str(e))
        return cfg.decision(org)

    @property
    def enabled(self) -> bool:
        """True while usage is collected (mode ``on`` or ``local``)."""
        return self.decision().collecting

    @property
    def mode(self) -> str:
        """``on`` (collect and send), ``local`` (collect, never send) or ``off``."""
        return self.decision().mode

    @property
    def instance_id(self) -> str:
        """This outbox's random instance id, created on first use (with its secret).

        :raises OutboxError: when the outbox cannot be opened.
        """
        with self.connect() as conn:
            return store.instance_id(conn, self._new_id)

    def set_enabled(self, enabled: bool) -> tuple[Decision, store.Discarded]:
        """Store the organisation's choice; switching off erases everything unsent.

        The choice is stored even when the environment locks telemetry off (it
        takes effect once the lock is lifted); the returned decision says
        whether anything effective changed. Who may call this is the caller's
        business: the web integration asks its ``authorize`` hook for ``admin``.
        """
        decision, discarded, _ = self.switch(enabled)
        return decision, discarded

    def switch(self, enabled: bool) -> tuple[Decision, store.Discarded, Switched]:
        """:meth:`set_enabled`, also returning the whole :class:`~outbox.consent.Switched`."""
        with self.connect() as conn:
            done = consent.switch(conn, enabled, now=int(self._clock()))
        return self.decision(), done.discarded, done

    # -- what an administrator is shown before deciding -------------------------------

    def preview(self) -> dict[str, Any] | None:
        """The payload the next heartbeat would send now (``outbox preview``), ``heartbeat_id``
        left ``None``; None when there is no outbox yet. Read-only; never raises for a
        missing outbox.

        :raises OutboxError: when the outbox exists but cannot be read.
        """
        cfg = self._config()
        try:
            with self.connect(create=False, readonly=True) as conn:
                return heartbeats.preview(
                    conn, now=int(self._clock()), version=cfg.version, edition=cfg.edition
                )
        except OutboxMissing:
            return None

    def last_sent(self) -> heartbeats.Heartbeat | None:
        """The last heartbeat delivered (status ``sent``), or None.

        :raises OutboxError: when the outbox exists but cannot be read.
        """
        try:
            with self.connect(create=False, readonly=True) as conn:
                sent = heartbeats.history(conn, status="sent", limit=1)
        except OutboxMissing:
            return None
        return sent[0] if sent else None

    def worker(self) -> WorkerHealth | None:
        """Whether a worker sends this outbox's heartbeats (None: no outbox yet).

        :raises OutboxError: when the outbox exists but cannot be read.
        """
        cfg = self._config()
        try:
            with self.connect(create=False, readonly=True) as conn:
                decision = cfg.decision(store.org_enabled(conn))
                return health.read(
                    conn, now=int(self._clock()), decision=decision, edition=cfg.edition
                )
        except OutboxMissing:
            return None

    def close(self) -> None:
        """Close the track-call connection (it reopens on the next call)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()
