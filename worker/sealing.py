"""When the next heartbeat is due, and sealing it: the two steps of a seal, paced.

:func:`seal` plans the aggregation outside the write lock (read windows, the
:class:`~worker.pacing.Pacer` between them) and commits it in one short transaction
(:mod:`outbox.heartbeats`). :func:`next_due` applies :func:`worker.schedule.next_due`
to what the outbox remembers (the last seal, the instance id).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from outbox import heartbeats, store
from outbox.config import Config
from outbox.store import Meta
from worker import schedule
from worker.pacing import Pacer

log = logging.getLogger("worker")


def next_due(
    conn: sqlite3.Connection,
    config: Config,
    *,
    now: float,
    started_at: float,
    new_id: Callable[[], str],
) -> float:
    """The unix time at which the next heartbeat should be sealed."""
    last = store.get(conn, Meta.LAST_SEAL_AT)
    return schedule.next_due(
        now=now,
        started_at=started_at,
        last_seal_at=None if last is None else float(str(last)),
        edition=config.edition,
        instance_id=store.instance_id(conn, new_id),
    )


def seal(
    conn: sqlite3.Connection,
    config: Config,
    pacer: Pacer,
    *,
    now: float,
    local: bool,
    allow_empty: bool,
    heartbeat_id: Callable[[], str],
) -> str | None:
    """Seal the unsent events into a heartbeat, unless one is pending; returns its id.

    :param local: store it as ``local`` (kept here, never sent).
    :param allow_empty: seal even with nothing to report (a scheduled seal reports in).
    """
    if heartbeats.pending(conn) is not None:
        return None  # one pending heartbeat at a time; the backlog waits for it
    plan = heartbeats.plan_seal(conn, hook=lambda _: pacer.between_windows())
    pacer.observe("before_seal_commit")
    hb = heartbeats.commit_seal(
        conn,
        plan,
        heartbeat_id=heartbeat_id(),
        now=int(now),
        version=config.version,
        edition=config.edition,
        allow_empty=allow_empty,
        local=local,
    )
    pacer.observe("after_seal_commit")
    if hb is None:
        return None
    events = (
        f"events {hb.first_event_id + 1}..{hb.last_event_id}"
        if hb.last_event_id > hb.first_event_id
        else "no new events"
    )
    log.info(
        "sealed heartbeat %s (sequence %d, %s, %d bytes%s)",
        hb.id,
        hb.sequence,
        events,
        len(hb.payload),
        ", local: kept here, never sent" if local else "",
    )
    return hb.id
