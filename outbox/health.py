"""Is anyone sending? A worker that never runs is made visible (DESIGN.md section 6).

The worker writes meta ``worker_seen_at`` at every cycle (``outbox export``
writes ``last_export_at`` for sites without a network). :func:`assess` is the pure
rule, :func:`read` applies it to an outbox; ``outbox status``, the settings API, the
privacy page and the library's one log line all show its message.

While sharing is on, the worker is *missing* when none has run for two heartbeat
intervals (2 hours licensed, 2 days community), or when none ever ran and the
oldest unsent count is more than an hour old.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from outbox import store
from outbox.config import Decision
from outbox.contract import iso_utc
from outbox.store import Meta

#: Seconds between scheduled heartbeats, per edition (DESIGN.md section 5).
INTERVALS: Final[dict[str, float]] = {"licensed": 3600.0, "community": 86400.0}
#: A worker is missing after this many intervals without a cycle.
OVERDUE_INTERVALS: Final = 2
#: With no worker ever seen, how old the oldest unsent count may get.
NEVER_SEEN_GRACE: Final = 3600

START_HINT: Final = (
    "start outbox-worker with the same HELIOS_TELEMETRY_* environment as the app "
    "(a systemd unit is in contrib/systemd), or run `outbox-worker --once` from cron"
)


@dataclass(frozen=True)
class WorkerHealth:
    """What the outbox says about its worker."""

    last_seen_at: int | None
    last_export_at: int | None
    missing: bool
    message: str | None
    #: The worker's note when it last held unsent data back (its environment disagrees).
    held_back: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "last_seen_at": None if self.last_seen_at is None else iso_utc(self.last_seen_at),
            "last_export_at": None if self.last_export_at is None else iso_utc(self.last_export_at),
            "missing": self.missing,
            "message": self.message,
            "held_back": self.held_back,
        }


def _hours(seconds: float) -> int:
    return max(1, int(seconds // 3600))


def assess(
    *,
    now: int,
    sending: bool,
    edition: str,
    last_seen_at: int | None,
    last_export_at: int | None,
    oldest_unsent_at: int | None,
) -> str | None:
    """The warning to show, or None when a worker (or an export) keeps up."""
    if not sending:
        return None
    limit = OVERDUE_INTERVALS * INTERVALS.get(edition, INTERVALS["community"])
    seen = max((t for t in (last_seen_at, last_export_at) if t is not None), default=None)
    if seen is not None:
        if now - seen <= limit:
            return None
        return f"no worker has run for {_hours(now - seen)} hours, so nothing is sent; {START_HINT}"
    if oldest_unsent_at is None or now - oldest_unsent_at <= NEVER_SEEN_GRACE:
        return None
    return (
        f"no worker has ever run on this outbox and counts have waited "
        f"{_hours(now - oldest_unsent_at)} hours, so nothing is sent; {START_HINT}"
    )


def read(conn: sqlite3.Connection, *, now: int, decision: Decision, edition: str) -> WorkerHealth:
    """Apply :func:`assess` to the outbox behind ``conn`` (reads only)."""
    seen = store.get_int(conn, Meta.WORKER_SEEN_AT, 0) or None
    lease = store.worker_lease(conn)
    if lease is not None and lease.held(now):
        seen = now  # a worker holds the outbox right now
    exported = store.get_int(conn, Meta.LAST_EXPORT_AT, 0) or None
    # The first pending row is (about) the oldest: ids grow with time. O(log n).
    row = conn.execute(
        "SELECT at FROM events WHERE id > ? ORDER BY id LIMIT 1", (store.sealed_through(conn),)
    ).fetchone()
    oldest = None if row is None else int(row[0])
    message = assess(
        now=now,
        sending=decision.sending,
        edition=edition,
        last_seen_at=seen,
        last_export_at=exported,
        oldest_unsent_at=oldest,
    )
    return WorkerHealth(
        seen, exported, message is not None, message, store.get_json(conn, Meta.WORKER_HELD_BACK)
    )
