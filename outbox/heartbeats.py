"""Heartbeats in the outbox: plan and commit a seal, record delivery, read history.

Sealing is two steps so that the write lock is held for milliseconds whatever
the backlog:

1. :func:`plan_seal` reads (no write lock; WAL readers never block writers) the
   new high-water mark and the per-day sums of the events up to it.
2. :func:`commit_seal` reads the drop counts and builds and freezes the payload
   in one read snapshot, then takes the write lock, checks that nothing moved the
   cursor or took the drop counts meanwhile and that no heartbeat is pending,
   inserts the heartbeat, moves the cursor and subtracts the drops it reports —
   O(1) rows written, in one transaction.

:func:`preview` runs the same two computations without writing: it is exactly
what the next seal would freeze, but for the random ``heartbeat_id``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from outbox import store
from outbox.contract import NAME_CAP, Status, encode, iso_utc, sha256_hex
from outbox.db import transaction
from outbox.payload import Aggregate, build_payload
from outbox.store import (
    Meta,
    aggregate_range,
    drops,
    existing_instance_id,
    instance_id,
    last_event_id,
    sealed_through,
)

_COLUMNS = (
    "id, sequence, first_event_id, last_event_id, period_start, period_end, payload, "
    "payload_sha256, status, attempts, last_error, receipt, sealed_at, last_attempt_at, settled_at"
)


@dataclass(frozen=True)
class Heartbeat:
    """One row of the ``heartbeats`` table."""

    id: str
    sequence: int
    first_event_id: int
    last_event_id: int
    period_start: str
    period_end: str
    payload: bytes
    payload_sha256: str
    status: Status
    attempts: int
    last_error: str | None
    receipt: str | None
    sealed_at: int
    last_attempt_at: int | None
    settled_at: int | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Heartbeat:
        values = list(row)
        values[6] = bytes(values[6])
        return cls(*values)

    def counts(self) -> dict[str, Any]:
        """The decoded payload."""
        return json.loads(self.payload)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SealPlan:
    """What the next seal covers, computed outside the write lock."""

    after: int  # the current cursor (exclusive lower bound)
    through: int  # the new high-water mark
    aggregates: list[Aggregate]
    first_at: int | None  # earliest event time in the range

    @property
    def empty(self) -> bool:
        return not self.aggregates


def plan_seal(conn: sqlite3.Connection, *, hook: Callable[[str], None] | None = None) -> SealPlan:
    """Read the range the next seal covers and its per-day sums, without the write lock.

    The cursor and the mark come from one snapshot; the sums are read one window
    of ids at a time, each its own snapshot, with ``hook("plan")`` between windows.
    A read that spans a large backlog would otherwise keep the WAL from being
    checkpointed for seconds, and a track call would end up paying for it; the
    worker checkpoints in the hook. Reading window by window is exact because the
    rows of the range change only by compaction, which only the worker that seals
    runs (one worker per outbox), and by discarding, which moves the cursor and
    makes :func:`commit_seal` refuse the plan.
    """
    conn.execute("BEGIN")  # one snapshot for the cursor and the mark
    try:
        after = sealed_through(conn)
        through = max(after, last_event_id(conn))
    finally:
        conn.execute("COMMIT")
    aggregates, first_at = aggregate_range(conn, after, through, hook=hook)
    return SealPlan(after, through, aggregates, first_at)


def _payload_for(
    conn: sqlite3.Connection,
    plan: SealPlan,
    *,
    heartbeat_id: str | None,
    now: int,
    version: str,
    edition: str,
    name_cap: int,
    dropped: dict[str, int],
    instance: str | None,
) -> tuple[dict[str, Any], int, str, str]:
    sequence = store.get_int(conn, Meta.LAST_SEQUENCE) + 1
    end = iso_utc(now)
    if plan.first_at is not None:
        start = iso_utc(min(plan.first_at, now))
    else:
        start = str(store.get(conn, Meta.LAST_PERIOD_END, end))
    payload = build_payload(
        plan.aggregates,
        dropped=dropped,
        heartbeat_id=heartbeat_id,
        instance_id=instance,
        sequence=sequence,
        period_start=start,
        period_end=end,
        version=version,
        edition=edition,
        name_cap=name_cap,
    )
    return payload, sequence, start, end


def _unchanged(
    conn: sqlite3.Connection, plan: SealPlan, sequence: int, reported: dict[str, int]
) -> bool:
    """Nothing sealed, discarded or purged since ``plan`` (and its payload) was made.

    A discard with no event to skip leaves the cursor where it was but zeroes the drop
    counts, and drop counts only grow otherwise: every count ``reported`` must still be
    pending.
    """
    now_pending = drops(conn).pending
    return (
        sealed_through(conn) == plan.after
        and store.get_int(conn, Meta.LAST_SEQUENCE) == sequence - 1
        and pending(conn) is None
        and all(now_pending.get(reason, 0) >= n for reason, n in reported.items())
    )


def commit_seal(
    conn: sqlite3.Connection,
    plan: SealPlan,
    *,
    heartbeat_id: str,
    now: int,
    version: str,
    edition: str,
    allow_empty: bool = False,
    local: bool = False,
    name_cap: int = NAME_CAP,
) -> Heartbeat | None:
    """Freeze ``plan`` into a pending heartbeat, in one short write transaction.

    The payload (sums, JSON, hash: the heavy part) is built before the write lock,
    from one read snapshot; the transaction only checks that nothing moved meanwhile
    and inserts. The drop counts reported are subtracted, not zeroed, so that a loss
    counted meanwhile goes into the next heartbeat.

    With ``local`` (mode ``local``) the heartbeat is stored already settled as
    ``'local'``: shown by the CLI, never sent, and it does not block the next seal.

    :returns: the new heartbeat, or ``None`` when nothing was sealed: a
        heartbeat is still pending, the cursor moved since the plan (switched off,
        purged, sealed elsewhere), or there is nothing to report and ``allow_empty``
        is false.
    """
    instance = instance_id(conn)  # made here if needed: the snapshot below only reads
    conn.execute("BEGIN")
    try:
        reported = drops(conn).pending
        payload, sequence, start, end = _payload_for(
            conn,
            plan,
            heartbeat_id=heartbeat_id,
            now=now,
            version=version,
            edition=edition,
            name_cap=name_cap,
            dropped=reported,
            instance=instance,
        )
        current = _unchanged(conn, plan, sequence, reported)
    finally:
        conn.execute("COMMIT")
    if not current:
        return None
    if plan.empty and not any(payload["dropped"].values()) and not allow_empty:
        return None
    body = encode(payload)
    digest = sha256_hex(body)
    with transaction(conn):
        if not _unchanged(conn, plan, sequence, reported):
            return None
        conn.execute(
            "INSERT INTO heartbeats (id, sequence, first_event_id, last_event_id, period_start, "
            "period_end, payload, payload_sha256, status, sealed_at, settled_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                heartbeat_id,
                sequence,
                plan.after,
                plan.through,
                start,
                end,
                body,
                digest,
                "local" if local else "pending",
                now,
                now if local else None,
            ),
        )
        store.put(conn, Meta.SEALED_THROUGH, plan.through)
        store.put(conn, Meta.LAST_SEQUENCE, sequence)
        store.put(conn, Meta.LAST_SEAL_AT, now)
        store.put(conn, Meta.LAST_PERIOD_END, end)
        store.take_drops(conn, reported)
    return get(conn, heartbeat_id)


def preview(
    conn: sqlite3.Connection, *, now: int, version: str, edition: str, name_cap: int = NAME_CAP
) -> dict[str, Any]:
    """The payload the next seal would freeze now, ``heartbeat_id`` left ``None``.

    Read-only: an outbox that has no instance id yet shows ``null`` there (the
    id is created by the first seal or the first ``telemetry.instance_id``).
    """
    plan = plan_seal(conn)
    conn.execute("BEGIN")
    try:
        payload, *_ = _payload_for(
            conn,
            plan,
            heartbeat_id=None,
            now=now,
            version=version,
            edition=edition,
            name_cap=name_cap,
            dropped=drops(conn).pending,
            instance=existing_instance_id(conn),
        )
    finally:
        conn.execute("COMMIT")
    return payload


def pending(conn: sqlite3.Connection) -> Heartbeat | None:
    """The heartbeat sealed but not yet delivered (at most one exists)."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM heartbeats WHERE status = 'pending'").fetchone()
    return None if row is None else Heartbeat.from_row(row)


def get(conn: sqlite3.Connection, heartbeat_id: str) -> Heartbeat | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM heartbeats WHERE id = ?", (heartbeat_id,)
    ).fetchone()
    return None if row is None else Heartbeat.from_row(row)


def ids_starting_with(conn: sqlite3.Connection, prefix: str, *, limit: int = 2) -> list[str]:
    """Heartbeat ids that start with ``prefix`` (the CLI accepts a short id), at most ``limit``."""
    rows = conn.execute(
        "SELECT id FROM heartbeats WHERE substr(id, 1, ?) = ? ORDER BY sequence DESC LIMIT ?",
        (len(prefix), prefix, limit),
    )
    return [str(r[0]) for r in rows]


def history(
    conn: sqlite3.Connection, *, status: Status | None = None, limit: int | None = None
) -> list[Heartbeat]:
    """Heartbeats, newest sequence first."""
    sql = f"SELECT {_COLUMNS} FROM heartbeats"
    args: tuple[Any, ...] = ()
    if status is not None:
        sql += " WHERE status = ?"
        args = (status,)
    sql += " ORDER BY sequence DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args += (limit,)
    return [Heartbeat.from_row(r) for r in conn.execute(sql, args)]


def record_attempt(
    conn: sqlite3.Connection,
    heartbeat_id: str,
    *,
    now: int,
    error: str | None,
    attempts: int = 1,
) -> None:
    """Count delivery attempts that did not settle the heartbeat (it stays pending)."""
    conn.execute(
        "UPDATE heartbeats SET attempts = attempts + ?, last_attempt_at = ?, last_error = ? "
        "WHERE id = ? AND status = 'pending'",
        (attempts, now, error, heartbeat_id),
    )


def settle(
    conn: sqlite3.Connection,
    heartbeat_id: str,
    *,
    status: Literal["sent", "rejected", "local"],
    now: int,
    attempts: int,
    receipt: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Mark a pending heartbeat sent, rejected or kept local, in one transaction.

    :param attempts: attempts made in this delivery (added to earlier ones).
    :returns: False when it was not pending any more (already settled, discarded).
    """
    with transaction(conn):
        cur = conn.execute(
            "UPDATE heartbeats SET status = ?, settled_at = ?, "
            "last_attempt_at = CASE WHEN ? > 0 THEN ? ELSE last_attempt_at END, "
            "attempts = attempts + ?, receipt = ?, last_error = ? "
            "WHERE id = ? AND status = 'pending'",
            (
                status,
                now,
                attempts,
                now,
                attempts,
                None if receipt is None else json.dumps(receipt),
                error,
                heartbeat_id,
            ),
        )
        return cur.rowcount == 1
