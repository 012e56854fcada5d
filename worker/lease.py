"""One worker per outbox: a lease row in the outbox itself (table ``worker_lease``).

The holder writes ``owner`` (``host:pid:token``), its ``pid``, ``acquired_at`` and
``expires_at`` and renews the lease every cycle and between delivery attempts. A
worker may take the lease when nobody holds it, when it has expired, or when
the holder ran on this host and its process is gone (``kill(pid, 0)`` fails) —
so a worker that was SIGKILLed is replaced at once by the next one, and a worker
on another host (a shared volume) is replaced when its lease expires.

A holder whose pid equals ours on this host is alive only if this very process
holds the lease through another :class:`Lease` (two workers embedded in one
process); otherwise it is a previous life of this process number (a container
restarted with the same hostname), which cannot be running, so its lease is taken.

:func:`may_take` is the decision, pure but for the injected ``alive`` check.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import sqlite3
from collections.abc import Callable

from outbox.db import transaction
from outbox.store import WorkerLease, worker_lease
from worker.errors import LeaseLost

#: The ``worker_lease`` row, and reading it: the core's, which ``outbox status`` shows.
LeaseRow = WorkerLease
read = worker_lease


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host (whoever owns it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


#: Owners of the leases held by this process (see the module docstring).
_held_here: set[str] = set()


def holder_alive(row: LeaseRow) -> bool:
    """Whether the process holding ``row`` (on this host) is still running."""
    if row.pid == os.getpid():
        return row.owner in _held_here
    return pid_alive(row.pid)


def may_take(
    row: LeaseRow | None,
    *,
    owner: str,
    host: str,
    now: float,
    alive: Callable[[LeaseRow], bool] = holder_alive,
) -> bool:
    """Whether the worker ``owner`` on ``host`` may take or keep the lease ``row``.

    :param alive: whether the holder's process runs (asked only for holders on this host).
    """
    if row is None or row.owner == owner or row.expires_at <= now:
        return True
    if row.host == host:
        return not alive(row)
    return False


class Lease:
    """This process's claim on one outbox.

    :param ttl: seconds a lease lasts without renewal; longer than the longest
        gap between renewals (one delivery attempt plus one wait).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        ttl: float,
        host: str | None = None,
        pid: int | None = None,
        alive: Callable[[LeaseRow], bool] = holder_alive,
    ) -> None:
        self._conn = conn
        self.ttl = ttl
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.owner = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self._alive = alive
        self.held = False
        #: When the lease was last taken or renewed (the caller's clock).
        self.renewed_at = float("-inf")

    def acquire(self, now: float) -> LeaseRow | None:
        """Take the lease if we may; returns ``None`` when taken, else the row of its holder."""
        with transaction(self._conn):
            row = read(self._conn)
            if not may_take(row, owner=self.owner, host=self.host, now=now, alive=self._alive):
                return row
            self._conn.execute(
                "INSERT INTO worker_lease (id, owner, pid, acquired_at, expires_at) "
                "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
                "pid = excluded.pid, acquired_at = excluded.acquired_at, "
                "expires_at = excluded.expires_at",
                (self.owner, self.pid, int(now), int(now + self.ttl)),
            )
        self.held = True
        self.renewed_at = now
        _held_here.add(self.owner)
        return None

    def renew(self, now: float) -> None:
        """Extend our lease; raises :class:`LeaseLost` if another worker took it."""
        cur = self._conn.execute(
            "UPDATE worker_lease SET expires_at = ? WHERE id = 1 AND owner = ?",
            (int(now + self.ttl), self.owner),
        )
        if cur.rowcount != 1:
            self.held = False
            _held_here.discard(self.owner)
            row = read(self._conn)
            holder = "nobody" if row is None else f"pid {row.pid} on {row.host}"
            raise LeaseLost(
                f"another worker ({holder}) took over this outbox while this one was stalled; "
                "this worker stops so that only one sends"
            )
        self.renewed_at = now

    def release(self, now: float) -> None:
        """Let the lease go (kept as a row that expired now, so ``outbox status`` shows who ran)."""
        if self.held:
            self._conn.execute(
                "UPDATE worker_lease SET expires_at = ? WHERE id = 1 AND owner = ?",
                (int(now), self.owner),
            )
            self.held = False
            _held_here.discard(self.owner)
