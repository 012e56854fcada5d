"""Reading the outbox: derived counters, drops, settings, instance id, summary.

Counters are never kept anywhere: they are ``SUM(count)`` over the event rows.
An event is *pending* while its id is above the seal cursor (meta
``sealed_through``); the counters of a sealed but unsent heartbeat (*in flight*)
are read from its frozen payload, which is exactly what will leave the machine.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outbox.db import get_meta, get_meta_int, set_meta, transaction
from outbox.names import KINDS, PAYLOAD_KEYS, Kind
from outbox.payload import Aggregate, day_of
from outbox.settings import ORG_SETTING_KEY

DROP_REASONS = ("invalid_name", "storage_error", "over_capacity", "unknown_name")


@dataclass(frozen=True)
class Counter:
    kind: Kind
    name: str
    count: int


def sealed_through(conn: sqlite3.Connection) -> int:
    """The seal cursor: events with a larger id are pending."""
    return get_meta_int(conn, "sealed_through")


def last_event_id(conn: sqlite3.Connection) -> int:
    """The largest event id present (0 when the log is empty)."""
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return int(row[0] or 0)


def pending_counters(conn: sqlite3.Connection, kind: Kind | None = None) -> list[Counter]:
    """Counts per (kind, name) of the unsealed events, sorted by kind then name."""
    sql = "SELECT kind, name, sum(count) FROM events WHERE id > ?"
    args: tuple[Any, ...] = (sealed_through(conn),)
    if kind is not None:
        sql += " AND kind = ?"
        args += (kind,)
    sql += " GROUP BY kind, name"
    rows = [Counter(k, n, int(c)) for k, n, c in conn.execute(sql, args)]
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(rows, key=lambda c: (order[c.kind], c.name))


#: Event ids one GROUP BY of :func:`aggregate_range` covers. SQLite aggregates by
#: sorting, and its sorter holds every row of the query (in memory: temp_store is
#: MEMORY), so a backlog is summed in windows and the windows merged here.
AGGREGATE_WINDOW = 50_000


def aggregate_range(
    conn: sqlite3.Connection,
    after: int,
    through: int,
    *,
    window: int = AGGREGATE_WINDOW,
    hook: Callable[[str], None] | None = None,
) -> tuple[list[Aggregate], int | None]:
    """Per-day sums of the events with ``after < id <= through``, and their earliest time.

    One pass over the id range (the rowid b-tree), in windows of ``window`` ids:
    memory holds one window's rows plus one entry per (kind, name, day), whatever
    the backlog. Outside a transaction each window is its own snapshot; call it
    inside one read transaction for a single snapshot.

    :param hook: called with ``"plan"`` between two windows.
    """
    sums: dict[tuple[str, str, int], int] = {}
    first: int | None = None
    lo = after
    while lo < through:
        hi = min(through, lo + window)
        for kind, name, day, count, min_at in conn.execute(
            "SELECT kind, name, at / 86400 AS day, sum(count), min(at) FROM events "
            "WHERE id > ? AND id <= ? GROUP BY kind, name, day",
            (lo, hi),
        ):
            key = (kind, name, int(day))
            sums[key] = sums.get(key, 0) + int(count)
            first = int(min_at) if first is None else min(first, int(min_at))
        lo = hi
        if hook is not None and lo < through:
            hook("plan")
    aggregates = [
        Aggregate(kind, name, day_of(day * 86400), count)  # type: ignore[arg-type]
        for (kind, name, day), count in sums.items()
    ]
    return aggregates, first


def inflight_counters(conn: sqlite3.Connection, kind: Kind | None = None) -> list[Counter]:
    """Counts per (kind, name) of the pending (sealed, unsent) heartbeat's frozen payload."""
    row = conn.execute("SELECT payload FROM heartbeats WHERE status = 'pending'").fetchone()
    if row is None:
        return []
    payload = json.loads(row[0])
    return [
        Counter(k, name, int(count))
        for k in KINDS
        if kind is None or k == kind
        for name, count in sorted(payload.get(PAYLOAD_KEYS[k], {}).items())
    ]


@dataclass(frozen=True)
class Drops:
    pending: dict[str, int]
    total: dict[str, int]


def drops(conn: sqlite3.Connection) -> Drops:
    rows = conn.execute("SELECT reason, pending, total FROM dropped").fetchall()
    return Drops(
        pending={r: int(p) for r, p, _ in rows},
        total={r: int(t) for r, _, t in rows},
    )


def add_drops(conn: sqlite3.Connection, reason: str, n: int) -> None:
    """Count ``n`` things that could not be recorded, for the next heartbeat's ``dropped``."""
    conn.execute(
        "UPDATE dropped SET pending = pending + ?1, total = total + ?1 WHERE reason = ?2",
        (n, reason),
    )


def instance_id(
    conn: sqlite3.Connection, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> str:
    """Get or create the instance id: one random UUID4 per outbox, never machine-derived.

    ``INSERT OR IGNORE`` then read: when several processes create it at the same
    instant, the first insert wins and every process reads that one.
    """
    value = get_meta(conn, "instance_id")
    if value is None:
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?)", (new_id(),)
        )
        value = get_meta(conn, "instance_id")
    return str(value)


def existing_instance_id(conn: sqlite3.Connection) -> str | None:
    """The instance id if one was made, without creating it (for read-only callers)."""
    value = get_meta(conn, "instance_id")
    return None if value is None else str(value)


def org_enabled(conn: sqlite3.Connection) -> bool | None:
    """The organisation's stored choice, or ``None`` when it never chose."""
    row = conn.execute(
        "SELECT value FROM organization_settings WHERE key = ?", (ORG_SETTING_KEY,)
    ).fetchone()
    return None if row is None else row[0] == "true"


@dataclass(frozen=True)
class Discarded:
    """What switching off (or ``purge --all``) made unsendable."""

    events: int
    heartbeats: int


def set_org_enabled(conn: sqlite3.Connection, enabled: bool, *, now: int) -> Discarded:
    """Store the organisation's choice; switching off discards unsent data in the same transaction.

    Discarding moves the seal cursor past every event and deletes the pending
    heartbeat: O(1) writes, so the transaction is short whatever the backlog.
    The rows themselves are deleted afterwards by
    :func:`outbox.maintenance.delete_covered_events`, in chunks.
    """
    with transaction(conn):
        conn.execute(
            "INSERT INTO organization_settings (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (ORG_SETTING_KEY, "true" if enabled else "false", now),
        )
        if enabled:
            return Discarded(0, 0)
        return discard_unsent_in_transaction(conn)


def discard_unsent_in_transaction(conn: sqlite3.Connection) -> Discarded:
    """Make every unsent event and heartbeat unsendable; call inside a write transaction."""
    after = sealed_through(conn)
    n_events = int(
        conn.execute(
            "SELECT coalesce(sum(count), 0) FROM events WHERE id > ?", (after,)
        ).fetchone()[0]
    )
    set_meta(conn, "sealed_through", max(after, last_event_id(conn)))
    n_heartbeats = conn.execute("DELETE FROM heartbeats WHERE status = 'pending'").rowcount
    conn.execute("UPDATE dropped SET pending = 0")
    return Discarded(n_events, n_heartbeats)


def discard_unsent(conn: sqlite3.Connection) -> Discarded:
    """:func:`discard_unsent_in_transaction` in its own transaction."""
    with transaction(conn):
        return discard_unsent_in_transaction(conn)


@dataclass(frozen=True)
class WorkerLease:
    """The row of ``worker_lease``: which worker process holds the outbox, until when."""

    owner: str
    pid: int
    acquired_at: int
    expires_at: int

    def held(self, now: float) -> bool:
        """True while the lease has not expired."""
        return self.expires_at > now

    @property
    def host(self) -> str:
        """The host part of ``owner`` (``host:pid:token``)."""
        return self.owner.rsplit(":", 2)[0]


def worker_lease(conn: sqlite3.Connection) -> WorkerLease | None:
    """The current lease row (live or expired), or ``None`` when no worker ever took it."""
    row = conn.execute(
        "SELECT owner, pid, acquired_at, expires_at FROM worker_lease WHERE id = 1"
    ).fetchone()
    return None if row is None else WorkerLease(str(row[0]), int(row[1]), int(row[2]), int(row[3]))
