"""Pacing a long step: what the worker does between two transactions, said explicitly.

A seal of a big backlog reads in windows; maintenance writes in chunks. Between
two of them the worker keeps its lease, copies the WAL back (PASSIVE: writers never
wait for it) and pauses, so that a track call waiting for the write lock gets its
turn (SQLite's busy handler polls and is not fair); between maintenance chunks it
also honours a stop request. Each of these is its own method; the ``observe`` hook
(the crash tests kill the process there) only watches, and is called first.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Final

from outbox import maintenance

Hook = Callable[[str], None]

#: Step names passed to ``hook``, in the order a cycle reaches them.
STEPS: Final = (
    "plan",  # between two read windows of a seal's aggregation (big backlogs only)
    "before_post",  # a pending heartbeat is about to be POSTed
    "after_post",  # the answer is in, nothing marked yet
    "after_mark",  # the outcome is committed
    "before_seal_commit",  # the plan is read, the seal transaction not begun
    "after_seal_commit",  # the heartbeat is sealed
    "before_compact",
    "compact",  # after each compaction transaction
    "before_capacity",
    "capacity",  # after each size-cap transaction
    "before_purge",
    "purge",  # between deletion chunks
    "vacuum",  # between incremental-vacuum transactions
    "before_checkpoint",
    "checkpoint",  # after a WAL checkpoint (also the cheap one between cycles)
    "after_cycle",
)


def no_hook(_: str) -> None:
    return None


class Interrupted(Exception):
    """A stop was asked for; raised between two maintenance transactions."""


class Pacer:
    """The pauses of one worker.

    :param conn: the worker's connection (looked up at each call: it can be reopened).
    :param pause: seconds to pause between two transactions.
    :param stop_event: set when the worker is asked to stop.
    :param keep_lease: renews the lease when it is due (cheap otherwise).
    :param observe: the step hook; called with the step name before anything else.
    """

    def __init__(
        self,
        conn: Callable[[], sqlite3.Connection],
        *,
        pause: float,
        stop_event: threading.Event,
        keep_lease: Callable[[], None],
        observe: Hook = no_hook,
    ) -> None:
        self._conn = conn
        self._pause = pause
        self._stop = stop_event
        self._keep_lease = keep_lease
        self.observe = observe

    def between_windows(self) -> None:
        """Between two read windows of a seal: the WAL written meanwhile can be
        checkpointed now (not while a read is open), by us rather than a track call."""
        self.observe("plan")
        self._keep_lease()
        maintenance.checkpoint(self._conn(), "PASSIVE")
        if self._pause > 0:
            self._stop.wait(self._pause)

    def between_chunks(self, step: str) -> None:
        """Between two maintenance transactions (``compact``, ``capacity``, ``purge``,
        ``vacuum``): keep the lease, stop if asked, copy the WAL back, pause.

        :raises Interrupted: when a stop was asked for.
        """
        self.observe(step)
        self._keep_lease()
        if self._stop.is_set():
            raise Interrupted(step)
        maintenance.checkpoint(self._conn(), "PASSIVE")
        if self._pause > 0 and self._stop.wait(self._pause):
            raise Interrupted(step)
