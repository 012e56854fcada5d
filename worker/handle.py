"""The worker's hold on its outbox file: open (and recover) it, take the lease, notice a
replaced file, reopen.

Another process may move the outbox aside (``outbox-worker`` of an older life
recovering it) or replace it; a connection would keep working on the old, unlinked
file while track calls write to the new one. :meth:`OutboxHandle.replaced` compares
the file's identity each cycle.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from outbox import maintenance, store
from outbox.contract import iso_utc
from outbox.db import file_identity, transaction
from outbox.errors import translate
from outbox.store import Meta
from worker.errors import LeaseHeld
from worker.lease import Lease, LeaseRow
from worker.recovery import open_outbox

log = logging.getLogger("worker")


class OutboxHandle:
    """One worker's connection to its outbox and its lease.

    :param wait: sleeps up to ``timeout`` seconds; True when asked to stop.
    """

    def __init__(
        self,
        path: Path,
        *,
        ttl: float,
        clock: Callable[[], float],
        wait: Callable[[float], bool],
        wait_for_lease: bool,
        lease_poll: float,
    ) -> None:
        self.path = path
        self._ttl = ttl
        self._clock = clock
        self._wait = wait
        self._wait_for_lease = wait_for_lease
        self._lease_poll = lease_poll
        self._conn: sqlite3.Connection | None = None
        self.lease: Lease | None = None
        self._inode: tuple[int, int] | None = None

    @property
    def opened(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the outbox is not open: Worker.open() first")
        return self._conn

    def open(self) -> None:
        """Check (recovering a corrupt file), connect, and take the lease.

        :raises LeaseHeld: another worker holds it (unless waiting was asked for).
        :raises StorageError: the outbox cannot be used.
        """
        try:
            self._conn, _ = open_outbox(self.path, now=self._clock())
        except sqlite3.Error as e:
            raise translate(e, self.path) from e
        self._inode = file_identity(self.path)
        self.lease = Lease(self.conn, ttl=self._ttl)
        while (holder := self._acquire()) is not None:
            text = (
                f"{self.path}: another worker (pid {holder.pid} on {holder.host}) "
                f"holds this outbox until {iso_utc(holder.expires_at)}; "
            )
            if not self._wait_for_lease:
                raise LeaseHeld(text + "stop it first, or start this one with --wait")
            log.info("%swaiting for it (--wait)", text)
            if self._wait(self._lease_poll):
                raise LeaseHeld(text + "stopped while waiting for it")

    def _acquire(self) -> LeaseRow | None:
        assert self.lease is not None
        try:
            return self.lease.acquire(self._clock())
        except sqlite3.Error as e:
            raise translate(e, self.path) from e

    def replaced(self) -> bool:
        """True when another file (or none) now stands at the path."""
        return file_identity(self.path) != self._inode

    def reopen(self) -> None:
        """The outbox went bad or was replaced while we ran: check it again, recovering it."""
        self.close(release=False)
        now = self._clock()
        self._conn, _ = open_outbox(self.path, now=now)
        self._inode = file_identity(self.path)
        self.lease = Lease(self._conn, ttl=self._ttl)
        holder = self.lease.acquire(now)
        if holder is not None:
            raise LeaseHeld(f"another worker (pid {holder.pid}) took this outbox over")

    def renew(self, now: float) -> None:
        """Renew the lease and say that a worker ran (``outbox status``, the privacy page)."""
        with transaction(self.conn):
            if self.lease is not None:
                self.lease.renew(now)
            store.put(self.conn, Meta.WORKER_SEEN_AT, int(now))

    def keep_lease(self) -> None:
        """Renew the lease during a long step when a third of its life has passed."""
        if self.lease is not None and self.lease.held:
            now = self._clock()
            if now - self.lease.renewed_at > self._ttl / 3:
                self.lease.renew(now)

    def close(self, *, release: bool = True) -> None:
        if self._conn is None:
            return
        try:
            if release and self.lease is not None:
                self.lease.release(self._clock())
            maintenance.checkpoint(self._conn, "PASSIVE")
        except sqlite3.Error as e:
            log.warning("closing the outbox: %s", e)
        finally:
            self._conn.close()
            self._conn = None
