"""The loop around :meth:`Worker.tick <worker.loop.Worker.tick>`: when to wake, what a failed
cycle does, and stopping.

Between cycles the loop waits on the worker's injected ``wait(timeout) -> bool`` (a
``threading.Event`` set by SIGTERM/SIGINT in production), waking at least every
``checkpoint_every`` seconds. A storage error fails one cycle (logged on the 1st, 2nd,
4th … failure in a row, and kept in meta ``last_cycle_error``) and the next one comes
after a growing pause (5 s doubling, at most 5 minutes); a corrupt outbox is
recovered in place.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from outbox.errors import OutboxCorrupt, StorageError, translate

if TYPE_CHECKING:
    from worker.loop import Summary, Worker

log = logging.getLogger("worker")


def next_wake(worker: Worker, now: float, summary: Summary) -> float:
    """When the next cycle is due (at least 1 s away, at most ``checkpoint_every``)."""
    wake = now + worker.options.checkpoint_every
    if summary.mode == "on" and summary.pending is not None and not summary.retired:
        wake = min(wake, worker.delivery.next_attempt_at)
    elif summary.mode != "off" and summary.pending is None and summary.next_due_at is not None:
        wake = min(wake, summary.next_due_at)
    return max(wake, now + 1.0)


def failure_pause(errors: int) -> float:
    """Seconds before the next cycle after ``errors`` failed cycles in a row."""
    return min(300.0, 5.0 * 2.0 ** min(errors, 16))


def run(worker: Worker) -> int:
    """Cycle until stopped; returns 0.

    :raises LeaseLost: another worker took the outbox over.
    """
    from worker.loop import Summary

    errors = 0
    clock = worker.clock
    while not worker.stop_event.is_set():
        now = clock()
        try:
            summary = worker.tick(now)
            errors = 0
        except (sqlite3.Error, StorageError) as e:
            err = e if isinstance(e, StorageError) else translate(e, worker.config.db_path)
            errors += 1
            summary = Summary(mode="error")
            worker.record_failure(now, err, errors)
            if isinstance(err, OutboxCorrupt):
                worker.reopen()
        wake = now + failure_pause(errors) if errors else next_wake(worker, now, summary)
        log.debug("cycle done (%s); the next in %.0f s", summary.mode, wake - now)
        if worker.wait(max(0.0, wake - clock())):
            break
    log.info("stopping: the current step finished")
    return 0
