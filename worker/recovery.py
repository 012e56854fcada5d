"""Opening the outbox at start-up, and recovering from a corrupt one.

The worker runs ``PRAGMA quick_check`` before it does anything else. A file that
fails it (or that is not an SQLite database at all) is moved aside as
``telemetry.db.corrupt-YYYYMMDDTHHMMSSZ`` (with its ``-wal``), and a new outbox
is created in its place. From the old file we try to save, each on its own:

* the instance id and its secret, so the receiver still sees (and accepts) the same
  instance;
* the last sequence number, so the receiver sees a gap, not a repeated number;
* the organisation's on/off choice, so an opt-out survives the recovery.

The loss is logged (an error naming the moved file) and counted: meta
``recovered_from`` (the moved file) and ``recovered_at`` (unix seconds) are set,
and one ``dropped.storage_error`` goes into the next heartbeat, so the receiver
sees that this instance lost data even though how much is unknown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from outbox import db, store
from outbox.db import transaction
from outbox.errors import OutboxCorrupt
from outbox.store import ORG_SETTING_KEY, Meta

log = logging.getLogger("worker.recovery")


@dataclass(frozen=True)
class Salvage:
    """What could be read from a corrupt outbox (``None``: unreadable or absent)."""

    instance_id: str | None = None
    secret: str | None = None
    last_sequence: int | None = None
    org_setting: str | None = None


@dataclass(frozen=True)
class Recovered:
    moved_to: Path
    problem: str
    salvage: Salvage


def quick_check(conn: sqlite3.Connection) -> str | None:
    """``None`` when ``PRAGMA quick_check`` says ok, else what it found (first lines)."""
    rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    return None if rows == ["ok"] else "; ".join(rows)


def _aside(path: Path, now: float) -> Path:
    stamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return target


def move_aside(path: Path, now: float) -> Path:
    """Rename the outbox (and its ``-wal``) out of the way; drop its ``-shm``."""
    target = _aside(path, now)
    os.replace(path, target)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.replace(wal, target.with_name(target.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + "-shm").unlink()
    return target


def salvage(path: Path) -> Salvage:
    """Read what we can from a damaged outbox, never writing to it."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return Salvage()

    def one(sql: str, args: tuple[str, ...]) -> object:
        try:
            row = conn.execute(sql, args).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else row[0]

    try:
        iid = one("SELECT value FROM meta WHERE key = ?", (Meta.INSTANCE_ID.value,))
        secret = one("SELECT value FROM meta WHERE key = ?", (Meta.INSTANCE_SECRET.value,))
        seq = one("SELECT value FROM meta WHERE key = ?", (Meta.LAST_SEQUENCE.value,))
        org = one("SELECT value FROM organization_settings WHERE key = ?", (ORG_SETTING_KEY,))
    finally:
        conn.close()
    sequence: int | None = None
    with contextlib.suppress(TypeError, ValueError):
        sequence = int(str(seq)) if seq is not None else None
    return Salvage(
        instance_id=str(iid) if isinstance(iid, str) and iid else None,
        secret=str(secret) if isinstance(secret, str) and secret else None,
        last_sequence=sequence,
        org_setting=str(org) if org in ("true", "false") else None,
    )


def _record(conn: sqlite3.Connection, recovered: Recovered, now: float) -> None:
    s = recovered.salvage
    with transaction(conn):
        if s.instance_id is not None and s.secret is not None:
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [(Meta.INSTANCE_ID.value, s.instance_id), (Meta.INSTANCE_SECRET.value, s.secret)],
            )
        elif s.instance_id is not None:  # an outbox from before secrets: one is made later
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                (Meta.INSTANCE_ID.value, s.instance_id),
            )
        if s.last_sequence is not None:
            store.put(conn, Meta.LAST_SEQUENCE, s.last_sequence)
        if s.org_setting is not None:
            conn.execute(
                "INSERT OR REPLACE INTO organization_settings (key, value, updated_at) "
                "VALUES (?, ?, ?)",
                (ORG_SETTING_KEY, s.org_setting, int(now)),
            )
        store.put(conn, Meta.RECOVERED_FROM, str(recovered.moved_to))
        store.put(conn, Meta.RECOVERED_AT, int(now))
        store.add_drops(conn, "storage_error", 1)


def open_outbox(
    path: Path, *, now: float, busy_timeout: float = 5.0
) -> tuple[sqlite3.Connection, Recovered | None]:
    """Open (creating if needed) and check the outbox; recover it if it is corrupt.

    :raises StorageError: for problems recovery cannot fix (read-only, locked,
        written by a newer version).
    """
    problem: str | None = None
    conn: sqlite3.Connection | None = None
    try:
        conn = db.connect(path, busy_timeout=busy_timeout)
        problem = quick_check(conn)
    except OutboxCorrupt as e:
        problem = str(e)
    except sqlite3.DatabaseError as e:  # quick_check itself may fail on a damaged file
        problem = f"{type(e).__name__}: {e}"
    if problem is None and conn is not None:
        return conn, None
    if conn is not None:
        conn.close()
    moved = move_aside(path, now)
    recovered = Recovered(moved, problem or "unknown damage", salvage(moved))
    conn = db.connect(path, busy_timeout=busy_timeout)
    _record(conn, recovered, now)
    log.error(
        "%s was corrupt (%s); moved it to %s and started a new outbox. Unsent counts in it "
        "are lost (counted as dropped.storage_error); kept: instance id %s, sequence %s, "
        "organisation setting %s",
        path,
        recovered.problem,
        moved,
        "yes" if recovered.salvage.instance_id else "no",
        "yes" if recovered.salvage.last_sequence is not None else "no",
        "yes" if recovered.salvage.org_setting else "no (none stored, or unreadable)",
    )
    return conn, recovered
