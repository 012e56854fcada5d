"""Consent (DESIGN.md section 3): the one way to switch sharing, and the one way to erase.

:func:`switch` stores the organisation's choice; switching off is an explicit
opt-out and erases what was not sent in the same call. :func:`erase_unsent` is
that erasure, also used by the worker when its environment opts out explicitly
(``DO_NOT_TRACK``, ``HELIOS_TELEMETRY_ENABLED=false``) and by ``purge --all``.

Erasing leaves no trace in the files: the unsent heartbeat and the events are
deleted with ``secure_delete`` on (their bytes are overwritten with zeros), the
free pages are given back to the file system, and a TRUNCATE checkpoint empties
the ``-wal`` file, which still holds older copies of those pages. A reader that
keeps the WAL from being emptied (a long read by another process) leaves the
meta key ``erase_pending``; the worker's next maintenance finishes the job.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from outbox import maintenance, store
from outbox.db import is_busy, transaction
from outbox.store import Discarded, Meta

#: TRUNCATE checkpoints tried before leaving the last step to the worker.
_TRUNCATE_TRIES = 20


@dataclass(frozen=True)
class Switched:
    """What :func:`switch` did: the choice stored, and what an opt-out erased."""

    enabled: bool
    discarded: Discarded
    #: False when the WAL could not be emptied yet (the worker finishes it).
    wiped: bool = True
    #: Event rows deleted (unsent ones, and sent ones no heartbeat needs any more).
    rows: int = 0


def switch(conn: sqlite3.Connection, enabled: bool, *, now: int) -> Switched:
    """Store the organisation's choice; ``False`` also erases everything unsent.

    The choice and the discard are one transaction: a track call racing it is
    either erased with the rest or not written at all (its INSERT reads the setting).
    """
    with transaction(conn):
        store.put_org_enabled(conn, enabled, now=now)
        if enabled:
            return Switched(True, Discarded(0, 0))
        discarded = _discard(conn)
    return Switched(False, discarded, *_wipe(conn))


def erase_unsent(conn: sqlite3.Connection) -> Switched:
    """Erase every unsent event and heartbeat (an explicit opt-out), leaving no trace."""
    with transaction(conn):
        discarded = _discard(conn)
    return Switched(False, discarded, *_wipe(conn))


def finish_pending_erase(conn: sqlite3.Connection) -> bool:
    """Complete an earlier erase whose WAL could not be emptied; True when none is left."""
    if store.get(conn, Meta.ERASE_PENDING) is None:
        return True
    return _wipe(conn)[0]


def _discard(conn: sqlite3.Connection) -> Discarded:
    conn.execute("PRAGMA secure_delete = ON")
    discarded = store.discard_unsent(conn)
    store.put(conn, Meta.ERASE_PENDING, 1)
    return discarded


def _wipe(conn: sqlite3.Connection) -> tuple[bool, int]:
    """Delete the discarded rows, give their pages back and empty the WAL.

    :returns: whether the WAL is empty now, and the event rows deleted.
    """
    conn.execute("PRAGMA secure_delete = ON")
    try:
        rows = maintenance.delete_covered_events(conn)
        maintenance.vacuum(conn)
        with transaction(conn):
            store.delete(conn, Meta.ERASE_PENDING)
        for _ in range(_TRUNCATE_TRIES):
            try:
                busy, _, _ = maintenance.checkpoint(conn, "TRUNCATE")
            except sqlite3.OperationalError as e:
                if not is_busy(e):
                    raise
                busy = 1
            if not busy:
                return True, rows
            time.sleep(0.05)
        with transaction(conn):
            store.put(conn, Meta.ERASE_PENDING, 1)
        return False, rows
    finally:
        conn.execute("PRAGMA secure_delete = FAST")
