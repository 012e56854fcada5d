"""The worker: ``tick(now)`` is one cycle, ``run()`` loops until told to stop.

One cycle (:meth:`Worker.tick`):

1. **hold** the outbox (:mod:`worker.handle`): open it, notice a replaced file,
   renew the lease and say that a worker ran;
2. **decide** (:mod:`worker.mode`): the on/off rule on this worker's environment and
   the organisation setting. An explicit opt-out erases what was not sent; off by
   default with unsent data *holds back* (sends nothing, deletes nothing, warns);
   no HTTP client is ever built while off;
3. **deliver** a heartbeat left pending (:mod:`worker.delivery`; its backoff window over);
4. **seal** when due (:mod:`worker.schedule`) and nothing is pending: plan the
   aggregation outside the write lock, commit it in one short transaction; every
   scheduled seal reports in, with empty counts if nothing happened. ``local`` seals
   as ``local`` (kept, never sent);
5. **deliver** the new heartbeat;
6. **maintenance** (:mod:`worker.maintain`) after a seal or a delivery, and every
   ``maintenance_every`` seconds.

Between cycles :meth:`Worker.run` waits on an injected ``wait(timeout) -> bool``
(default: a ``threading.Event``, set by SIGTERM/SIGINT), waking at least every
``checkpoint_every`` seconds. ``hook(step)`` observes every step boundary
(:data:`STEPS`); the crash tests kill the process from it.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from outbox import consent, heartbeats, maintenance, store
from outbox.config import Config, Decision
from outbox.db import is_busy, transaction
from outbox.errors import StorageError
from outbox.store import Meta
from worker import running, sealing
from worker.delivery import Deliverer
from worker.handle import OutboxHandle
from worker.lease import Lease
from worker.maintain import checkpoint, maintain
from worker.mode import Plan, plan
from worker.options import Options
from worker.pacing import Hook, Pacer, no_hook
from worker.sender import Delivery

log = logging.getLogger("worker")


@dataclass(frozen=True)
class Summary:
    """What one :meth:`Worker.tick` did."""

    mode: str
    sealed: str | None = None  # id of the heartbeat sealed in this cycle
    deliveries: tuple[Delivery, ...] = ()
    pending: str | None = None  # id of a heartbeat still pending after the cycle
    retired: bool = False  # the configured endpoint answered 410
    discarded_events: int = 0  # an explicit opt-out: unsealed counts erased
    discarded_heartbeats: int = 0  # an explicit opt-out: sealed, unsent heartbeats erased
    next_due_at: float | None = None
    maintained: bool = False
    held_back: str | None = None  # off by default, yet data waits: why nothing was done


class Worker:
    """One outbox's worker. ``open()``, then ``tick(now)`` or ``run()``, then ``close()``.

    :param config: the environment (:meth:`outbox.config.Config.from_env`).
    :param options: the worker's own knobs (:class:`~worker.options.Options`).
    :param clock: unix seconds.
    :param wait: sleeps up to ``timeout`` seconds between cycles and returns True
        when asked to stop (default: ``stop_event.wait``).
    :param sleep: waits between delivery attempts (default: ``stop_event.wait``).
    :param transport: the ``httpx`` transport (default: the network).
    :param hook: observes each step boundary (:data:`STEPS`).
    :param rng: randomness for the pause between failed delivery cycles.
    :param new_id: makes heartbeat ids; ``new_instance_id`` the instance id, when the
        outbox has none yet (the app that tracks usually made it).
    """

    def __init__(
        self,
        config: Config,
        options: Options | None = None,
        *,
        clock: Callable[[], float] | None = None,
        wait: Callable[[float], bool] | None = None,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        hook: Hook = no_hook,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        new_instance_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config = config
        self.options = options = options or Options()
        self.stop_event = threading.Event()
        # Looked up at each call, so that freezegun (which patches time.time) applies.
        self.clock: Callable[[], float] = clock or (lambda: time.time())
        self.wait: Callable[[float], bool] = self.stop_event.wait if wait is None else wait
        self._new_id = new_id
        self._new_instance_id = new_instance_id
        self._handle = OutboxHandle(
            config.db_path,
            ttl=options.lease_ttl,
            clock=self.clock,
            wait=self.wait,
            wait_for_lease=options.wait_for_lease,
            lease_poll=options.lease_poll,
        )
        self.pacer = Pacer(
            lambda: self._handle.conn,
            pause=options.chunk_pause,
            stop_event=self.stop_event,
            keep_lease=self._handle.keep_lease,
            observe=hook,
        )
        self.delivery = Deliverer(
            self._handle,
            config,
            options,
            clock=self.clock,
            sleep=self._wait_between_attempts if sleep is None else sleep,
            transport=transport,
            stop_event=self.stop_event,
            rng=random.Random() if rng is None else rng,
            observe=hook,
            new_id=new_instance_id,
        )
        self.started_at = 0.0
        self._last_maintenance = float("-inf")
        self._last_checkpoint = float("-inf")
        self._last_warning: tuple[str, float] | None = None
        self._error_recorded = False

    def _wait_between_attempts(self, seconds: float) -> None:
        self.stop_event.wait(seconds)  # returns a bool; the sender wants None

    # -- life cycle ---------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        return self._handle.conn

    @property
    def lease(self) -> Lease | None:
        """This worker's lease on the outbox (None before :meth:`open`)."""
        return self._handle.lease

    @property
    def dormant(self) -> bool:
        """True while no outbox was opened (none exists and telemetry is off)."""
        return not self._handle.opened

    def open(self) -> None:
        """Check (and if needed recover) the outbox, then take the lease.

        With no outbox yet and the environment leaving telemetry off, the worker creates
        nothing: it stays *dormant* (each cycle only looks for the file).

        :raises LeaseHeld: another worker holds it (unless ``wait_for_lease``).
        :raises StorageError: the outbox cannot be used.
        """
        self.started_at = self.clock()
        if not self.config.db_path.exists() and self.config.decision(None).mode == "off":
            log.info(
                "no outbox at %s and telemetry is off: nothing to do until it is turned on",
                self.config.db_path,
            )
            return
        self._handle.open()
        assert self._handle.lease is not None
        log.info(
            "worker %s holds %s (mode %s, endpoint %s, edition %s)",
            self._handle.lease.owner,
            self.config.db_path,
            self.decision().mode,
            self.config.endpoint,
            self.config.edition,
        )

    def close(self) -> None:
        self.delivery.close()
        self._handle.close()

    def stop(self) -> None:
        """Ask the loop to stop after the current step (what SIGTERM does)."""
        self.stop_event.set()

    def decision(self) -> Decision:
        return self.config.decision(store.org_enabled(self.conn))

    # -- one cycle ----------------------------------------------------------------------

    def _plan(self) -> Plan:
        conn = self.conn
        decision = self.decision()
        unsent, pending = 0, False
        if decision.mode == "off" and not decision.opt_out and store.has_unsent(conn):
            waiting = maintenance.unsent(conn)
            unsent, pending = waiting.events, waiting.heartbeats > 0
        writers = store.get_json(conn, Meta.WRITERS)
        return plan(decision, writers=writers, unsent=unsent, pending=pending)

    def tick(self, now: float, *, force: bool = False) -> Summary:
        """One cycle at time ``now``. ``force`` (``--once``): seal now and try to deliver
        whatever is pending, ignoring the schedule and the backoff window."""
        if not self._handle.opened:
            if not self.config.db_path.exists():
                return Summary(mode="off")
            self._handle.open()
        elif self._handle.replaced():
            log.error(
                "%s was replaced or removed while the worker ran; reopening it (what the "
                "old file held and had not delivered is lost)",
                self.config.db_path,
            )
            self._handle.reopen()
        self._handle.renew(now)
        p = self._plan()
        self._warn(p, now, force=force)
        if p.action in ("erase", "hold", "idle"):
            return self._off(p, now, force=force)
        on = p.action == "send"
        retired = on and self.delivery.retired()
        deliveries: list[Delivery] = []
        if on and not retired and (d := self.delivery.deliver(now, force=force)) is not None:
            deliveries.append(d)
            retired = d.result == "retired"
        due = self._due(now)
        sealed = None
        if force or now >= due:
            sealed = self.seal(now, local=not on, allow_empty=not force)
            if sealed is not None:
                due = self._due(now)
        if sealed is not None and on and not retired:
            if (d := self.delivery.deliver(now, force=True)) is not None:
                deliveries.append(d)
                retired = d.result == "retired"
        maintained = self._maintain_if_due(now, force or bool(sealed or deliveries))
        left = heartbeats.pending(self.conn)
        active = bool(sealed or deliveries or maintained)
        self._write_meta(now, next_due=due, pending=left is not None, active=active)
        self.pacer.observe("after_cycle")
        return Summary(
            mode=p.decision.mode if on else "local",
            sealed=sealed,
            deliveries=tuple(deliveries),
            pending=None if left is None else left.id,
            retired=retired,
            next_due_at=due,
            maintained=maintained,
        )

    def _warn(self, p: Plan, now: float, *, force: bool) -> None:
        """The plan's warning: every ``--once`` run, else when it changes and every
        ``maintenance_every`` seconds while it lasts; kept in meta for ``outbox status``."""
        if p.warning is None:
            if self._last_warning is not None or store.get(self.conn, Meta.WORKER_HELD_BACK):
                store.delete(self.conn, Meta.WORKER_HELD_BACK)
            self._last_warning = None
            return
        last = self._last_warning
        if (
            force
            or last is None
            or last[0] != p.warning
            or now - last[1] >= (self.options.maintenance_every)
        ):
            log.warning("%s", p.warning)
            self._last_warning = (p.warning, now)
            store.put(self.conn, Meta.WORKER_HELD_BACK, {"message": p.warning, "at": int(now)})

    def _off(self, p: Plan, now: float, *, force: bool) -> Summary:
        conn = self.conn
        erased = store.Discarded(0, 0)
        if p.action == "erase" and store.has_unsent(conn):
            erased = consent.erase_unsent(conn).discarded
            log.info(
                "telemetry is off (%s): erased %d unsent counts and %d unsent heartbeat(s)",
                p.decision.reason,
                erased.events,
                erased.heartbeats,
            )
        maintained = self._maintain_if_due(
            now, force or bool(erased.events or erased.heartbeats), cap=p.action != "hold"
        )
        with transaction(conn):
            store.delete(conn, Meta.NEXT_DUE_AT, Meta.NEXT_ATTEMPT_AT)
            store.put(conn, Meta.LAST_CYCLE_AT, int(now))
        self.pacer.observe("after_cycle")
        return Summary(
            mode="off",
            discarded_events=erased.events,
            discarded_heartbeats=erased.heartbeats,
            maintained=maintained,
            held_back=p.warning if p.action == "hold" else None,
        )

    def _maintain_if_due(self, now: float, busy: bool, *, cap: bool = True) -> bool:
        if busy or now - self._last_maintenance >= self.options.maintenance_every:
            return self.maintain(now, cap=cap)
        if now - self._last_checkpoint >= self.options.checkpoint_every:
            checkpoint(self.conn, self.pacer)
            self._last_checkpoint = now
        return False

    def maintain(self, now: float, *, cap: bool = True) -> bool:
        """Compaction, the size cap, purge, checkpoint; False when a stop interrupted it, or
        when track calls held the write lock past the busy timeout (it runs again next cycle:
        every step is a short transaction, and one not taken changes nothing)."""
        try:
            if not maintain(self.conn, self.options, self.pacer, now=now, cap=cap):
                return False
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
            log.warning("maintenance deferred to the next cycle: the outbox is busy (%s)", e)
            return False
        self._last_maintenance = now
        checkpoint(self.conn, self.pacer)
        self._last_checkpoint = now
        return True

    # -- schedule and seal ------------------------------------------------------------------

    def _due(self, now: float) -> float:
        return sealing.next_due(
            self.conn,
            self.config,
            now=now,
            started_at=self.started_at,
            new_id=self._new_instance_id,
        )

    def seal(self, now: float, *, local: bool = False, allow_empty: bool = False) -> str | None:
        """Seal the unsent events into a heartbeat, unless one is pending; returns its id."""
        return sealing.seal(
            self.conn,
            self.config,
            self.pacer,
            now=now,
            local=local,
            allow_empty=allow_empty,
            heartbeat_id=self._new_id,
        )

    def _write_meta(self, now: float, *, next_due: float, pending: bool, active: bool) -> None:
        conn = self.conn
        stored = store.get(conn, Meta.NEXT_DUE_AT)
        unchanged = stored is not None and int(str(stored)) == int(next_due)
        if unchanged and not active and not self._error_recorded:
            return
        with transaction(conn):
            store.put(conn, Meta.NEXT_DUE_AT, int(next_due))
            store.put(conn, Meta.LAST_CYCLE_AT, int(now))
            store.delete(conn, Meta.LAST_CYCLE_ERROR)
            if not pending:
                store.delete(conn, Meta.NEXT_ATTEMPT_AT)
        self._error_recorded = False

    # -- the loop ---------------------------------------------------------------------------

    def next_wake(self, now: float, summary: Summary) -> float:
        """When the loop should run the next cycle (at least 1 s, at most ``checkpoint_every``)."""
        return running.next_wake(self, now, summary)

    def run(self) -> int:
        """Cycle until stopped (then returns 0); see :func:`worker.running.run`."""
        return running.run(self)

    def record_failure(self, now: float, err: StorageError, errors: int) -> None:
        """A cycle failed: log it (1st, 2nd, 4th, 8th … time) and keep it for ``outbox status``."""
        if errors == 1 or errors & (errors - 1) == 0:
            log.error("cycle failed (%d in a row): %s", errors, err)
        try:
            with transaction(self.conn):
                store.put(self.conn, Meta.LAST_CYCLE_ERROR, str(err)[:500])
                store.put(self.conn, Meta.LAST_CYCLE_AT, int(now))
            self._error_recorded = True
        except sqlite3.Error:
            pass

    def reopen(self) -> None:
        """The outbox went bad while we ran: check it again, recovering it if needed."""
        self._handle.reopen()
