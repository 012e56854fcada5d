"""Keeping the outbox small: compaction, the size cap, purge, vacuum, checkpoint.

Every operation here is chunked: each write transaction touches at most
``chunk`` rows, so a track call waiting on the lock waits milliseconds even when
millions of rows are processed. Each re-checks the seal cursor inside its
transaction and stops if someone moved it (switched off, purged everything).

Totals never change by compaction: rows of the same (kind, name, UTC day) above
the cursor are folded into their oldest row with the summed count.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from outbox.db import transaction
from outbox.store import Discarded, add_drops, last_event_id, sealed_through

#: Rows one maintenance transaction may touch. 5,000 keeps one compaction
#: window (the heaviest: a GROUP BY, an UPDATE and a DELETE) near 10 ms on a
#: small machine, so a track call waits one window at most (benchmarks/seal_backlog.py).
DEFAULT_CHUNK = 5_000

#: Unsealed rows kept after compaction; past this the oldest are dropped and
#: counted as ``dropped.over_capacity``. After compaction a row is one
#: (kind, name, day): 50,000 rows is 200 names for 250 days, about 2 MB.
DEFAULT_MAX_ROWS = 50_000

#: Sent and rejected heartbeats are kept this long for ``outbox heartbeats``.
DEFAULT_RETENTION_SECONDS = 30 * 86400

Hook = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def _ensure_fold_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS fold "
        "(keep INTEGER PRIMARY KEY, total INTEGER NOT NULL, first_at INTEGER NOT NULL, "
        "n INTEGER NOT NULL)"
    )


def _plan_fold(conn: sqlite3.Connection, after: int, through: int) -> bool:
    """Fill ``temp.fold`` for the rows with ``after < id <= through`` (a read of the
    main database: no write lock); True when some group has rows to fold."""
    conn.execute("DELETE FROM temp.fold")
    conn.execute(
        "INSERT INTO temp.fold SELECT min(id), sum(count), min(at), count(*) FROM events "
        "WHERE id > ? AND id <= ? GROUP BY kind, name, at / 86400",
        (after, through),
    )
    return conn.execute("SELECT 1 FROM temp.fold WHERE n > 1 LIMIT 1").fetchone() is not None


def _apply_fold(conn: sqlite3.Connection, after: int, through: int) -> int:
    """Apply ``temp.fold`` inside a write transaction; returns the rows removed."""
    conn.execute(
        "UPDATE events SET count = f.total, at = f.first_at FROM temp.fold AS f "
        "WHERE events.id = f.keep AND f.n > 1"
    )
    return conn.execute(
        "DELETE FROM events WHERE id > ? AND id <= ? AND id NOT IN (SELECT keep FROM temp.fold)",
        (after, through),
    ).rowcount


@dataclass(frozen=True)
class Compacted:
    rows_removed: int
    transactions: int


def compact(
    conn: sqlite3.Connection,
    *,
    chunk: int = DEFAULT_CHUNK,
    max_passes: int = 8,
    hook: Hook = _noop,
) -> Compacted:
    """Fold unsealed rows per (kind, name, UTC day), ``chunk`` rows per transaction.

    Each pass walks the unsealed rows in windows of ``chunk`` rows; a group that
    spans windows keeps one row per window and is folded further by the next
    pass, over far fewer rows. Each pass goes up to the last row tracked when it
    starts, so rows tracked during a pass are folded by the next one: the size cap
    that follows counts compacted rows, not a busy instance's fresh ones.

    The window's bound and its GROUP BY are read before the write lock is taken
    (two thirds of the work); the transaction only rewrites the window. That is
    exact because the unsealed rows below ``through`` change only by compaction
    and the size cap, which only the one worker of an outbox runs, one after the
    other, and by discarding, which moves the cursor (checked in the transaction).
    A window with nothing to fold takes no write lock at all.

    :param hook: called with a step name between transactions (tests use it to
        kill the process at a precise point).
    """
    _ensure_fold_table(conn)
    removed = transactions = 0
    start = sealed_through(conn)
    for _ in range(max_passes):
        through = last_event_id(conn)
        pass_removed = 0
        cursor = start
        while cursor < through:
            row = conn.execute(
                "SELECT id FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT 1 OFFSET ?",
                (cursor, through, chunk - 1),
            ).fetchone()
            end = through if row is None else int(row[0])
            if _plan_fold(conn, cursor, end):
                with transaction(conn):
                    if sealed_through(conn) != start:
                        return Compacted(removed + pass_removed, transactions)
                    pass_removed += _apply_fold(conn, cursor, end)
                transactions += 1
            elif sealed_through(conn) != start:
                return Compacted(removed + pass_removed, transactions)
            cursor = end
            hook("compact")
        removed += pass_removed
        if pass_removed == 0:
            break
    return Compacted(removed, transactions)


def unsealed_rows(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM events WHERE id > ?", (sealed_through(conn),)
        ).fetchone()[0]
    )


def enforce_capacity(
    conn: sqlite3.Connection,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    chunk: int = DEFAULT_CHUNK,
    hook: Hook = _noop,
) -> int:
    """Drop the oldest unsealed rows beyond ``max_rows``; count them as ``over_capacity``.

    Run it after :func:`compact`, so that only a real excess is dropped.

    :returns: the summed count of the events dropped.
    """
    start = sealed_through(conn)
    excess = unsealed_rows(conn) - max_rows
    dropped = 0
    while excess > 0:
        n = min(excess, chunk)
        with transaction(conn):
            if sealed_through(conn) != start:
                break
            bound = conn.execute(
                "SELECT id FROM events WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (start, n - 1)
            ).fetchone()
            if bound is None:
                break
            lost = int(
                conn.execute(
                    "SELECT coalesce(sum(count), 0) FROM events WHERE id > ? AND id <= ?",
                    (start, bound[0]),
                ).fetchone()[0]
            )
            conn.execute("DELETE FROM events WHERE id > ? AND id <= ?", (start, bound[0]))
            add_drops(conn, "over_capacity", lost)
        dropped += lost
        excess -= n
        hook("capacity")
    return dropped


def delivered_through(conn: sqlite3.Connection) -> int:
    """Events with an id up to this are in a finished heartbeat or were discarded."""
    row = conn.execute("SELECT first_event_id FROM heartbeats WHERE status = 'pending'").fetchone()
    return int(row[0]) if row is not None else sealed_through(conn)


def delete_covered_events(
    conn: sqlite3.Connection, *, chunk: int = DEFAULT_CHUNK, hook: Hook = _noop
) -> int:
    """Delete the rows that no unsent heartbeat needs any more, ``chunk`` per transaction."""
    bound = delivered_through(conn)
    deleted = 0
    while True:
        with transaction(conn):
            n = conn.execute(
                "DELETE FROM events WHERE id IN "
                "(SELECT id FROM events WHERE id <= ? ORDER BY id LIMIT ?)",
                (bound, chunk),
            ).rowcount
        deleted += n
        if n < chunk:
            return deleted
        hook("purge")


@dataclass(frozen=True)
class Purged:
    """What a purge removed (or, with ``dry_run``, would remove)."""

    heartbeats: int
    event_rows: int
    unsent: Discarded
    bytes_reclaimed: int
    dry_run: bool


def _history_filter(cutoff: int | None) -> tuple[str, tuple[int, ...]]:
    if cutoff is None:
        return "status <> 'pending'", ()
    return "status <> 'pending' AND settled_at < ?", (cutoff,)


def event_rows(conn: sqlite3.Connection) -> int:
    """How many event rows the outbox holds (sealed or not)."""
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def unsent(conn: sqlite3.Connection) -> Discarded:
    """What an erase would discard now: unsent counts and the pending heartbeat."""
    events = conn.execute(
        "SELECT coalesce(sum(count), 0) FROM events WHERE id > ?", (sealed_through(conn),)
    ).fetchone()[0]
    heartbeats = conn.execute(
        "SELECT count(*) FROM heartbeats WHERE status = 'pending'"
    ).fetchone()[0]
    return Discarded(int(events), int(heartbeats))


def purge(
    conn: sqlite3.Connection,
    *,
    now: int,
    older_than: int | None = None,
    dry_run: bool = False,
    chunk: int = DEFAULT_CHUNK,
    hook: Hook = _noop,
) -> Purged:
    """Delete sent history: sent, rejected and local heartbeats, and the event rows
    they cover. Unsent data is never touched here (erasing it is
    :func:`outbox.consent.erase_unsent`, an explicit opt-out).

    :param older_than: seconds; only heartbeats settled before ``now - older_than``
        go. Event rows already covered by a settled heartbeat always go: the
        heartbeat's payload holds their counts.
    """
    where, args = _history_filter(None if older_than is None else now - older_than)
    if dry_run:
        n_hb = int(
            conn.execute(f"SELECT count(*) FROM heartbeats WHERE {where}", args).fetchone()[0]
        )
        n_rows = int(
            conn.execute(
                "SELECT count(*) FROM events WHERE id <= ?", (delivered_through(conn),)
            ).fetchone()[0]
        )
        return Purged(n_hb, n_rows, Discarded(0, 0), 0, True)
    pages_before = _pages(conn)
    n_hb = 0
    while True:
        with transaction(conn):
            n = conn.execute(
                f"DELETE FROM heartbeats WHERE id IN "
                f"(SELECT id FROM heartbeats WHERE {where} LIMIT ?)",
                (*args, chunk),
            ).rowcount
        n_hb += n
        if n < chunk:
            break
    n_rows = delete_covered_events(conn, chunk=chunk, hook=hook)
    vacuum(conn, hook=hook)
    return Purged(
        n_hb, n_rows, Discarded(0, 0), max(0, pages_before - _pages(conn)) * _page_size(conn), False
    )


def _pages(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA page_count").fetchone()[0])


def _page_size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA page_size").fetchone()[0])


def vacuum(conn: sqlite3.Connection, *, pages_per_step: int = 500, hook: Hook = _noop) -> int:
    """Give free pages back to the file system, ``pages_per_step`` pages per transaction.

    :param hook: called with ``"vacuum"`` between two transactions.
    """
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2 = INCREMENTAL
        return 0
    freed = 0
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    while free > 0:
        # executescript steps the pragma to completion: execute() would step it once,
        # and each step frees a single page.
        conn.executescript(f"PRAGMA incremental_vacuum({min(free, pages_per_step)})")
        left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if left >= free:  # nothing moved (another writer, or nothing to move): stop
            break
        freed += free - left
        free = left
        if free > 0:
            hook("vacuum")
    return freed


def checkpoint(conn: sqlite3.Connection, mode: str = "PASSIVE") -> tuple[int, int, int]:
    """Copy the WAL back into the database file; returns (busy, wal frames, checkpointed)."""
    if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(f"unknown checkpoint mode {mode!r}")
    busy, log, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(log), int(done)


@dataclass(frozen=True)
class FileSizes:
    database: int
    wal: int

    @property
    def total(self) -> int:
        return self.database + self.wal


def file_sizes(path: str | os.PathLike[str]) -> FileSizes:
    p = Path(path)

    def size(q: Path) -> int:
        try:
            return q.stat().st_size
        except FileNotFoundError:
            return 0

    return FileSizes(size(p), size(p.with_name(p.name + "-wal")))
