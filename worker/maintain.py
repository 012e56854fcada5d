"""Maintenance, in short chunks: compaction, the size cap, purge past the retention, the WAL.

Every transaction touches at most ``chunk`` rows and the :class:`~worker.pacing.Pacer`
runs between two of them (lease, checkpoint, pause, stop). An opt-out whose WAL could
not be emptied at once (another process was reading) is finished here.
"""

from __future__ import annotations

import logging
import sqlite3

from outbox import consent, maintenance
from worker.options import Options
from worker.pacing import Interrupted, Pacer

log = logging.getLogger("worker")


def maintain(
    conn: sqlite3.Connection, options: Options, pacer: Pacer, *, now: float, cap: bool = True
) -> bool:
    """Compaction, the size cap (unless ``cap`` is false: a worker holding back deletes no
    unsent row), purge past the retention period, and a pending erase.

    :returns: False when a stop request interrupted it between two chunks.
    """
    step = pacer.between_chunks
    try:
        pacer.observe("before_compact")
        maintenance.compact(conn, chunk=options.chunk, hook=step)
        pacer.observe("before_capacity")
        if cap:
            lost = maintenance.enforce_capacity(
                conn, max_rows=options.max_rows, chunk=options.chunk, hook=step
            )
            if lost:
                log.warning(
                    "the outbox holds more than %d unsent rows after compaction: dropped the "
                    "oldest %d counts (reported as dropped.over_capacity)",
                    options.max_rows,
                    lost,
                )
        pacer.observe("before_purge")
        purged = maintenance.purge(
            conn, now=int(now), older_than=options.retention, chunk=options.chunk, hook=step
        )
        if purged.heartbeats:
            log.info(
                "purged %d heartbeat(s) settled more than %d days ago",
                purged.heartbeats,
                options.retention // 86400,
            )
    except Interrupted:
        return False
    if not consent.finish_pending_erase(conn):
        log.warning("an opt-out's WAL is still being read by another process; trying again")
    return True


def checkpoint(conn: sqlite3.Connection, pacer: Pacer) -> None:
    """Copy the WAL back into the database (PASSIVE: writers never wait for it)."""
    pacer.observe("before_checkpoint")
    maintenance.checkpoint(conn, "PASSIVE")
    pacer.observe("checkpoint")
