"""The outbox's rows: the track call's statements, meta keys, counters, drops, identity.

Counters are never kept anywhere: they are ``SUM(count)`` over the event rows.
An event is *pending* while its id is above the seal cursor (meta
``sealed_through``); the counters of a sealed but unsent heartbeat (*in flight*)
are read from its frozen payload, which is exactly what will leave the machine.

Small facts live in the ``meta`` table under the keys of :class:`Meta`: a key is
never a bare string, so every reader and writer of a fact can be found.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from outbox.contract import KINDS, PAYLOAD_KEYS, DropReason, Kind, day_of, iso_utc
from outbox.payload import Aggregate

#: The organisation's choice in the host app's ``organization_settings`` table.
ORG_SETTING_KEY: Final = "telemetry_enabled"

_ORG_ON = (
    f"coalesce((SELECT value FROM organization_settings WHERE key = '{ORG_SETTING_KEY}'), ?)"
    " = 'true'"
)
#: The track call: one conditional INSERT. The organisation setting is read in the
#: same statement, so a call racing an opt-out is either discarded with the rest or
#: not written at all. Parameters: kind, name, count, at, and what to assume when
#: the organisation never chose (``'true'``/``'false'``).
INSERT_EVENT: Final = (
    f"INSERT INTO events (kind, name, count, at) SELECT ?, ?, ?, ? WHERE {_ORG_ON}"
)
#: Count ``?1`` losses of reason ``?2``, on the same condition (``?3``: the assumption).
ADD_DROP_IF_ON: Final = (
    "UPDATE dropped SET pending = pending + ?1, total = total + ?1 WHERE reason = ?2 AND "
    + _ORG_ON.replace("?)", "?3)")
)


class Meta(StrEnum):
    """The keys of the ``meta`` table, and who writes them."""

    #: Identity (core): a random UUID4 and a random secret, made together, never derived.
    INSTANCE_ID = "instance_id"
    INSTANCE_SECRET = "instance_secret"
    #: The seal (core): events with a larger id are pending; the last sequence and seal.
    SEALED_THROUGH = "sealed_through"
    LAST_SEQUENCE = "last_sequence"
    LAST_SEAL_AT = "last_seal_at"
    LAST_PERIOD_END = "last_period_end"
    #: The worker's schedule and delivery state (unix seconds, the retired URL).
    NEXT_DUE_AT = "next_due_at"
    NEXT_ATTEMPT_AT = "next_attempt_at"
    RETIRED_ENDPOINT = "retired_endpoint"
    LAST_CYCLE_AT = "last_cycle_at"
    LAST_CYCLE_ERROR = "last_cycle_error"
    #: When a worker last ran a cycle on this outbox (a missing worker shows).
    WORKER_SEEN_AT = "worker_seen_at"
    #: Why the last worker cycle held unsent data back (its environment disagrees), JSON.
    WORKER_HELD_BACK = "worker_held_back"
    #: What decided the state of the processes that track (JSON: mode, source, at).
    WRITERS = "writers"
    #: An opt-out whose last step (emptying the WAL file) is still to be done.
    ERASE_PENDING = "erase_pending"
    #: ``outbox export``: when a heartbeat was last written to a file.
    LAST_EXPORT_AT = "last_export_at"
    #: A corrupt outbox was moved aside: where to, and when.
    RECOVERED_FROM = "recovered_from"
    RECOVERED_AT = "recovered_at"
    #: What the web middlewares saw, per source, by outcome (JSON; :func:`add_web_tracking`).
    WEB_TRACKING = "web_tracking"


def get(conn: sqlite3.Connection, key: Meta, default: object = None) -> object:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key.value,)).fetchone()
    return default if row is None else row[0]


def get_int(conn: sqlite3.Connection, key: Meta, default: int = 0) -> int:
    value = get(conn, key)
    try:
        return default if value is None else int(str(value))
    except ValueError:
        return default


def get_json(conn: sqlite3.Connection, key: Meta) -> dict[str, Any] | None:
    value = get(conn, key)
    try:
        doc = json.loads(str(value)) if value is not None else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def put(conn: sqlite3.Connection, key: Meta, value: object) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key.value, json.dumps(value, sort_keys=True) if isinstance(value, dict) else value),
    )


def delete(conn: sqlite3.Connection, *keys: Meta) -> None:
    conn.executemany("DELETE FROM meta WHERE key = ?", [(k.value,) for k in keys])


#: At most this many middleware sources are kept in meta ``web_tracking``.
MAX_WEB_SOURCES: Final = 20


def add_web_tracking(
    conn: sqlite3.Connection,
    source: str,
    delta: Mapping[str, int],
    *,
    warning: str | None,
    now: int,
) -> None:
    """Add one middleware's request counts by outcome (``counted``, ``status``, ...) to meta
    ``web_tracking``, with its current warning. Several processes add to the same key:
    call it inside a write transaction."""
    doc = get_json(conn, Meta.WEB_TRACKING) or {}
    entry = doc.get(source)
    entry = entry if isinstance(entry, dict) else {}
    stored = entry.get("outcomes")
    outcomes = {
        str(k): int(v)
        for k, v in (stored.items() if isinstance(stored, dict) else ())
        if type(v) is int
    }
    for outcome, n in delta.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
    if source not in doc and len(doc) >= MAX_WEB_SOURCES:
        return
    doc[source] = {
        "outcomes": outcomes,
        "warning": warning,
        "since": entry.get("since", now),
        "updated_at": now,
    }
    put(conn, Meta.WEB_TRACKING, doc)


def web_tracking(conn: sqlite3.Connection) -> dict[str, dict[str, Any]] | None:
    """What each web middleware saw (``outbox status`` key ``web_tracking``), or None when
    none wrote yet: per source ``seen``, ``counted``, ``unknown_name``, ``not_counted`` by
    reason, its ``warning`` and when it last wrote."""
    doc = get_json(conn, Meta.WEB_TRACKING)
    if not doc:
        return None
    view: dict[str, dict[str, Any]] = {}
    for source, entry in sorted(doc.items()):
        if not isinstance(entry, dict) or not isinstance(entry.get("outcomes"), dict):
            continue
        outcomes = {str(k): v for k, v in entry["outcomes"].items() if type(v) is int}
        updated = entry.get("updated_at")
        view[source] = {
            "seen": sum(outcomes.values()),
            "counted": outcomes.get("counted", 0),
            "unknown_name": outcomes.get("unknown_name", 0),
            "not_counted": {
                k: n for k, n in sorted(outcomes.items()) if k not in ("counted", "unknown_name")
            },
            "warning": entry.get("warning") if isinstance(entry.get("warning"), str) else None,
            "updated_at": iso_utc(updated) if type(updated) is int else None,
        }
    return view


@dataclass(frozen=True)
class Counter:
    kind: Kind
    name: str
    count: int


def sealed_through(conn: sqlite3.Connection) -> int:
    """The seal cursor: events with a larger id are pending."""
    return get_int(conn, Meta.SEALED_THROUGH)


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


def add_drops(conn: sqlite3.Connection, reason: DropReason, n: int) -> None:
    """Count ``n`` things that could not be recorded, for the next heartbeat's ``dropped``."""
    conn.execute(
        "UPDATE dropped SET pending = pending + ?1, total = total + ?1 WHERE reason = ?2",
        (n, reason),
    )


def take_drops(conn: sqlite3.Connection, reported: dict[str, int]) -> None:
    """Subtract the drop counts a heartbeat reports from what the next one would report
    (not zeroed: a loss counted since the payload was built stays for the next one).
    The caller checked that they are all still pending."""
    conn.executemany(
        "UPDATE dropped SET pending = pending - ? WHERE reason = ?",
        [(n, reason) for reason, n in reported.items() if n],
    )


@dataclass(frozen=True)
class Credentials:
    """This outbox's identity at the receiver: the id in every payload, the secret in
    the ``Authorization`` header only."""

    instance_id: str
    secret: str


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def credentials(
    conn: sqlite3.Connection,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    new_secret: Callable[[], str] = _new_secret,
) -> Credentials:
    """Get or create the instance id and secret: random, never derived from the machine.

    ``INSERT OR IGNORE`` then read: when several processes create them at the same
    instant, the first insert wins and every process reads that one. An outbox made
    before secrets existed gets its secret here, beside its old id.
    """
    iid, secret = get(conn, Meta.INSTANCE_ID), get(conn, Meta.INSTANCE_SECRET)
    if iid is None or secret is None:
        conn.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [(Meta.INSTANCE_ID.value, new_id()), (Meta.INSTANCE_SECRET.value, new_secret())],
        )
        iid, secret = get(conn, Meta.INSTANCE_ID), get(conn, Meta.INSTANCE_SECRET)
    return Credentials(str(iid), str(secret))


def instance_id(
    conn: sqlite3.Connection, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> str:
    """Get or create the instance id (and with it the secret)."""
    return credentials(conn, new_id).instance_id


def existing_instance_id(conn: sqlite3.Connection) -> str | None:
    """The instance id if one was made, without creating it (for read-only callers)."""
    value = get(conn, Meta.INSTANCE_ID)
    return None if value is None else str(value)


def existing_secret(conn: sqlite3.Connection) -> str | None:
    """The instance secret if one was made, without creating it."""
    value = get(conn, Meta.INSTANCE_SECRET)
    return None if value is None else str(value)


def org_enabled(conn: sqlite3.Connection) -> bool | None:
    """The organisation's stored choice, or ``None`` when it never chose."""
    row = conn.execute(
        "SELECT value FROM organization_settings WHERE key = ?", (ORG_SETTING_KEY,)
    ).fetchone()
    return None if row is None else row[0] == "true"


@dataclass(frozen=True)
class Discarded:
    """What an opt-out (or ``purge --all``) made unsendable: counts and heartbeats."""

    events: int
    heartbeats: int


def put_org_enabled(conn: sqlite3.Connection, enabled: bool, *, now: int) -> None:
    """Store the organisation's choice (see :func:`outbox.consent.switch`, which also erases)."""
    conn.execute(
        "INSERT INTO organization_settings (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (ORG_SETTING_KEY, "true" if enabled else "false", now),
    )


def discard_unsent(conn: sqlite3.Connection) -> Discarded:
    """Make every unsent event and heartbeat unsendable; call inside a write transaction.

    Moves the seal cursor past every event and deletes the pending heartbeat: O(1)
    writes, so the transaction is short whatever the backlog. The event rows go
    afterwards, in chunks (:func:`outbox.maintenance.delete_covered_events`).
    """
    after = sealed_through(conn)
    n_events = int(
        conn.execute(
            "SELECT coalesce(sum(count), 0) FROM events WHERE id > ?", (after,)
        ).fetchone()[0]
    )
    put(conn, Meta.SEALED_THROUGH, max(after, last_event_id(conn)))
    n_heartbeats = conn.execute("DELETE FROM heartbeats WHERE status = 'pending'").rowcount
    conn.execute("UPDATE dropped SET pending = 0")
    return Discarded(n_events, n_heartbeats)


def has_unsent(conn: sqlite3.Connection) -> bool:
    """True when something waits to be sent: events past the cursor, a pending heartbeat
    or drop counts for the next heartbeat."""
    return (
        last_event_id(conn) > sealed_through(conn)
        or conn.execute("SELECT 1 FROM heartbeats WHERE status = 'pending'").fetchone() is not None
        or conn.execute("SELECT 1 FROM dropped WHERE pending > 0").fetchone() is not None
    )


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


def sendable(conn: sqlite3.Connection, heartbeat_id: str) -> tuple[bool | None, str | None]:
    """In one read: the organisation's choice and the heartbeat's status (None: gone).

    What the worker asks before every delivery attempt.
    """
    org, status = conn.execute(
        "SELECT (SELECT value FROM organization_settings WHERE key = ?), "
        "(SELECT status FROM heartbeats WHERE id = ?)",
        (ORG_SETTING_KEY, heartbeat_id),
    ).fetchone()
    return (None if org is None else org == "true"), status
