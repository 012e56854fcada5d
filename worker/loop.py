"""The worker process: ``tick(now)`` is one cycle, ``run()`` loops until told to stop.

One cycle (:meth:`Worker.tick`):

1. **decide**: the on/off rule (environment + the organisation setting stored in
   the outbox). Off: discard everything unsent, delete its rows, and stop there —
   no HTTP client is ever built, no connection opened.
2. **deliver** a heartbeat left pending by an earlier cycle (mode ``on``, the
   endpoint not retired, its backoff window over).
3. **seal** when due (:mod:`worker.schedule`) and nothing is pending: plan the
   aggregation outside the write lock, commit it in one short transaction. Every
   scheduled seal reports in, with empty counts if nothing happened, so the
   receiver knows an idle instance is alive. ``local`` mode seals as ``local``
   (kept for ``outbox heartbeats``, never sent).
4. **deliver** the new heartbeat and **mark** it in one transaction.
5. **maintenance** (after a seal or a delivery, and every ``maintenance_every``
   seconds): compaction, the size cap, purge of history past the retention
   period (with the rows it covered), WAL checkpoint — all in short chunks.

Between cycles :meth:`Worker.run` waits on an injected ``wait(timeout) -> bool``
(default: a ``threading.Event``, set by SIGTERM/SIGINT), waking at least every
``checkpoint_every`` seconds to renew the lease and checkpoint the WAL (track
calls never checkpoint: see ``outbox/db.py``).

``hook(step)`` is called at every step boundary (names in :data:`STEPS`);
the crash tests kill the process from it.
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import httpx

from outbox import heartbeats, maintenance, store
from outbox.config import Config as Settings
from outbox.config import Decision, Edition, EnvChoice, decide
from outbox.contract import iso_utc
from outbox.db import transaction
from outbox.errors import OutboxCorrupt, StorageError, translate
from outbox.store import Meta
from worker import schedule
from worker.errors import LeaseHeld
from worker.lease import Lease, LeaseRow
from worker.recovery import open_outbox
from worker.retry import RetryPolicy, cycle_delay
from worker.sender import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, Delivery, Sender

log = logging.getLogger("worker")

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
    "compact",  # after each compaction transaction (from outbox.maintenance)
    "before_capacity",
    "capacity",  # after each size-cap transaction
    "before_purge",
    "purge",  # between deletion chunks
    "vacuum",  # between incremental-vacuum transactions
    "before_checkpoint",
    "checkpoint",  # after a WAL checkpoint (also the cheap one between cycles)
    "after_cycle",
)

#: Steps between two maintenance transactions: a stop request is honoured there.
_CHUNK_STEPS: Final = frozenset({"compact", "capacity", "purge", "vacuum"})


class _Interrupted(Exception):
    """Raised from the hook between maintenance chunks once a stop was asked for."""


def _noop(_: str) -> None:
    return None


@dataclass(frozen=True)
class Config:
    """Everything the worker is told; build it with :meth:`from_settings`."""

    db_path: Path
    endpoint: str
    edition: Edition
    version: str
    env_enabled: EnvChoice
    do_not_track: bool
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retention: int = maintenance.DEFAULT_RETENTION_SECONDS
    max_rows: int = maintenance.DEFAULT_MAX_ROWS
    chunk: int = maintenance.DEFAULT_CHUNK
    chunk_pause: float = 0.025
    checkpoint_every: float = 30.0
    maintenance_every: float = 600.0
    lease_poll: float = 30.0
    wait_for_lease: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> Config:
        base = cls(
            db_path=settings.db_path,
            endpoint=settings.endpoint,
            edition=settings.edition,
            version=settings.version,
            env_enabled=settings.enabled,
            do_not_track=settings.do_not_track,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def lease_ttl(self) -> float:
        """Longer than the longest gap between renewals: one attempt plus one wait, thrice."""
        return max(120.0, 3 * (self.retry.max_wait + self.connect_timeout + self.read_timeout))


@dataclass(frozen=True)
class Summary:
    """What one :meth:`Worker.tick` did."""

    mode: str
    sealed: str | None = None  # id of the heartbeat sealed in this cycle
    deliveries: tuple[Delivery, ...] = ()
    pending: str | None = None  # id of a heartbeat still pending after the cycle
    retired: bool = False  # the configured endpoint answered 410
    discarded_events: int = 0  # mode off: unsealed counts deleted
    discarded_heartbeats: int = 0  # mode off: sealed, unsent heartbeats deleted
    next_due_at: float | None = None
    maintained: bool = False


class Worker:
    """One outbox's worker. ``open()``, then ``tick(now)`` or ``run()``, then ``close()``.

    :param clock: unix seconds.
    :param wait: sleeps up to ``timeout`` seconds between cycles and returns True
        when asked to stop (default: ``stop_event.wait``).
    :param sleep: waits between delivery attempts (default: ``stop_event.wait``).
    :param transport: the ``httpx`` transport (default: the network).
    :param hook: called with a step name at each step boundary (:data:`STEPS`).
    :param rng: randomness for the pause between failed delivery cycles.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] | None = None,
        wait: Callable[[float], bool] | None = None,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        hook: Hook = _noop,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config = config
        self.stop_event = threading.Event()
        # Looked up at each call, so that freezegun (which patches time.time) applies.
        self._clock = clock or (lambda: time.time())
        self._wait = self.stop_event.wait if wait is None else wait
        self._sleep = self.stop_event.wait if sleep is None else sleep
        self._transport = transport
        self._hook = hook
        self._rng = random.Random() if rng is None else rng
        self._new_id = new_id
        self._conn: sqlite3.Connection | None = None
        self._lease: Lease | None = None
        self._sender: Sender | None = None
        self.started_at = 0.0
        self._next_attempt_at = 0.0
        self._failed_cycles = 0
        self._last_maintenance = float("-inf")
        self._last_checkpoint = float("-inf")
        self._error_recorded = False
        self._inode: tuple[int, int] | None = None

    # -- life cycle ---------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("Worker.open() first")
        return self._conn

    def open(self) -> None:
        """Check (and if needed recover) the outbox, then take the lease.

        When there is no outbox yet and the environment leaves telemetry off, the
        worker creates nothing: it stays *dormant* (each cycle only looks for the
        file, which appears when the organisation turns telemetry on).

        :raises LeaseHeld: another worker holds it (unless ``wait_for_lease``).
        :raises StorageError: the outbox cannot be used.
        """
        self.started_at = self._clock()
        cfg = self.config
        if (
            not cfg.db_path.exists()
            and decide(cfg.env_enabled, cfg.do_not_track, None).mode == "off"
        ):
            log.info(
                "no outbox at %s and telemetry is off: nothing to do until it is turned on",
                cfg.db_path,
            )
            return
        self._open_outbox()

    @property
    def dormant(self) -> bool:
        """True while no outbox was opened (none exists and telemetry is off)."""
        return self._conn is None

    def _open_outbox(self) -> None:
        now = self._clock()
        try:
            self._conn, _ = open_outbox(self.config.db_path, now=now)
        except sqlite3.Error as e:
            raise translate(e, self.config.db_path) from e
        self._inode = _inode(self.config.db_path)
        self._lease = Lease(self.conn, ttl=self.config.lease_ttl)
        while True:
            holder = self._acquire(self._clock())
            if holder is None:
                break
            text = (
                f"{self.config.db_path}: another worker (pid {holder.pid} on {holder.host}) "
                f"holds this outbox until {iso_utc(holder.expires_at)}; "
            )
            if not self.config.wait_for_lease:
                raise LeaseHeld(text + "stop it first, or start this one with --wait")
            log.info("%swaiting for it (--wait)", text)
            if self._wait(self.config.lease_poll):
                raise LeaseHeld(text + "stopped while waiting for it")
        log.info(
            "worker %s holds %s (mode %s, endpoint %s, edition %s)",
            self._lease.owner,
            self.config.db_path,
            self.decision().mode,
            self.config.endpoint,
            self.config.edition,
        )

    def _acquire(self, now: float) -> LeaseRow | None:
        assert self._lease is not None
        try:
            return self._lease.acquire(now)
        except sqlite3.Error as e:
            raise translate(e, self.config.db_path) from e

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._conn is not None:
            try:
                if self._lease is not None:
                    self._lease.release(self._clock())
                maintenance.checkpoint(self._conn, "PASSIVE")
            except sqlite3.Error as e:
                log.warning("closing the outbox: %s", e)
            finally:
                self._conn.close()
                self._conn = None

    def stop(self) -> None:
        """Ask the loop to stop after the current step (what SIGTERM does)."""
        self.stop_event.set()

    # -- one cycle ----------------------------------------------------------------------

    def decision(self) -> Decision:
        return decide(
            self.config.env_enabled, self.config.do_not_track, store.org_enabled(self.conn)
        )

    def _step(self, name: str) -> None:
        self._hook(name)
        if name == "plan" or name in _CHUNK_STEPS:
            self._keep_lease()
        if name == "plan":
            # Between two read windows of a seal: the WAL written meanwhile can be
            # checkpointed now (not while a read is open), by us rather than a track
            # call; the pause lets a writer restart the WAL from its beginning, which
            # it cannot do while a reader is open.
            maintenance.checkpoint(self.conn, "PASSIVE")
            if self.config.chunk_pause > 0:
                self.stop_event.wait(self.config.chunk_pause)
        elif name in _CHUNK_STEPS:
            if self.stop_event.is_set():
                raise _Interrupted(name)
            # Maintenance writes megabytes of WAL; copying it back as it goes (PASSIVE:
            # writers never wait for it) keeps the WAL far from the size at which a
            # track call's own commit would have to checkpoint it.
            maintenance.checkpoint(self.conn, "PASSIVE")
            # SQLite's busy handler polls (1, 2, 5, 10, 15, 20 ms ...) and is not fair: a
            # track call waiting while transactions follow each other back to back can
            # miss every gap and time out. A pause longer than its polling interval lets
            # it in; with short chunks its wait stays at one chunk plus one pause.
            if self.config.chunk_pause > 0 and self.stop_event.wait(self.config.chunk_pause):
                raise _Interrupted(name)

    def tick(self, now: float, *, force: bool = False) -> Summary:
        """One cycle at time ``now``. ``force`` (``--once``): seal now and try to deliver
        whatever is pending, ignoring the schedule and the backoff window."""
        if self._conn is None:
            if not self.config.db_path.exists():
                return Summary(mode="off")
            self._open_outbox()
        elif _inode(self.config.db_path) != self._inode:
            # Another file now stands at the path (or none): our connection would keep
            # working on the old, unlinked one while track calls write to (or fail on)
            # the new one. Check the new one, recovering it if it is not an outbox.
            log.error(
                "%s was replaced or removed while the worker ran; reopening it (what the old "
                "file held and had not delivered is lost)",
                self.config.db_path,
            )
            self._reopen()
        if self._lease is not None:
            self._lease.renew(now)
        decision = self.decision()
        if decision.mode == "off":
            return self._off(now, force=force)
        retired = decision.mode == "on" and self._retired()
        deliveries: list[Delivery] = []
        if decision.mode == "on" and not retired:
            d = self._deliver(now, force=force)
            if d is not None:
                deliveries.append(d)
                retired = d.result == "retired"
        due = self._due(now)
        sealed = None
        if force or now >= due:
            sealed = self.seal(now, local=decision.mode == "local", allow_empty=not force)
            if sealed is not None:
                due = self._due(now)
        if sealed is not None and decision.mode == "on" and not retired:
            d = self._deliver(now, force=True)
            if d is not None:
                deliveries.append(d)
                retired = d.result == "retired"
        maintained = False
        overdue = now - self._last_maintenance >= self.config.maintenance_every
        if force or sealed or deliveries or overdue:
            maintained = self.maintain(now)
        elif now - self._last_checkpoint >= self.config.checkpoint_every:
            self._checkpoint(now)
        left = heartbeats.pending(self.conn)
        self._write_meta(
            now,
            next_due=due,
            pending=left is not None,
            active=bool(sealed or deliveries or maintained),
        )
        self._step("after_cycle")
        return Summary(
            mode=decision.mode,
            sealed=sealed,
            deliveries=tuple(deliveries),
            pending=None if left is None else left.id,
            retired=retired,
            next_due_at=due,
            maintained=maintained,
        )

    def _off(self, now: float, *, force: bool) -> Summary:
        conn = self.conn
        discarded = store.Discarded(0, 0)
        unsent = (
            store.last_event_id(conn) > store.sealed_through(conn)
            or heartbeats.pending(conn) is not None
            or any(store.drops(conn).pending.values())
        )
        if unsent:
            d = discarded = store.discard_unsent(conn)
            log.info(
                "telemetry is off (%s): discarded %d unsent counts and %d unsent heartbeat(s)",
                self.decision().reason,
                d.events,
                d.heartbeats,
            )
        maintained = False
        if force or unsent or now - self._last_maintenance >= self.config.maintenance_every:
            maintained = self.maintain(now)
        elif now - self._last_checkpoint >= self.config.checkpoint_every:
            self._checkpoint(now)
        with transaction(conn):
            store.delete(conn, Meta.NEXT_DUE_AT, Meta.NEXT_ATTEMPT_AT)
            store.put(conn, Meta.LAST_CYCLE_AT, int(now))
        self._step("after_cycle")
        return Summary(
            mode="off",
            discarded_events=discarded.events,
            discarded_heartbeats=discarded.heartbeats,
            maintained=maintained,
        )

    # -- schedule and seal ------------------------------------------------------------------

    def _due(self, now: float) -> float:
        last = store.get(self.conn, Meta.LAST_SEAL_AT)
        return schedule.next_due(
            now=now,
            started_at=self.started_at,
            last_seal_at=None if last is None else float(str(last)),
            edition=self.config.edition,
            instance_id=store.instance_id(self.conn, self._new_id),
        )

    def seal(self, now: float, *, local: bool = False, allow_empty: bool = False) -> str | None:
        """Seal the unsent events into a heartbeat, unless one is pending; returns its id."""
        conn = self.conn
        if heartbeats.pending(conn) is not None:
            return None  # one pending heartbeat at a time; the backlog waits for it
        plan = heartbeats.plan_seal(conn, hook=self._step)  # the heavy read, no write lock
        self._step("before_seal_commit")
        hb = heartbeats.commit_seal(
            conn,
            plan,
            heartbeat_id=self._new_id(),
            now=int(now),
            version=self.config.version,
            edition=self.config.edition,
            allow_empty=allow_empty,
            local=local,
        )
        self._step("after_seal_commit")
        if hb is None:
            return None
        log.info(
            "sealed heartbeat %s (sequence %d, %s, %d bytes%s)",
            hb.id,
            hb.sequence,
            f"events {hb.first_event_id + 1}..{hb.last_event_id}"
            if hb.last_event_id > hb.first_event_id
            else "no new events",
            len(hb.payload),
            ", local: kept here, never sent" if local else "",
        )
        return hb.id

    # -- deliver and mark -------------------------------------------------------------------

    def _retired(self) -> bool:
        """True while the configured endpoint is the one that answered 410."""
        retired = store.get(self.conn, Meta.RETIRED_ENDPOINT)
        if retired is None:
            return False
        if str(retired) == self.config.endpoint:
            return True
        store.delete(self.conn, Meta.RETIRED_ENDPOINT)
        log.info("endpoint changed from the retired %s: sending again", retired)
        return False

    def sender(self) -> Sender:
        """The one HTTP sender of this worker, built on first use (never while off)."""
        if self._sender is None:
            self._sender = Sender(
                endpoint=self.config.endpoint,
                version=self.config.version,
                policy=self.config.retry,
                secret=store.credentials(self.conn, self._new_id).secret,
                transport=self._transport,
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
                clock=self._clock,
                sleep=self._sleep_between_attempts,
                stop_event=self.stop_event,
                on_wait=self._renew_now,
            )
        return self._sender

    def _sleep_between_attempts(self, seconds: float) -> None:
        self._sleep(seconds)  # ``Event.wait`` returns a bool; the sender wants None

    def _renew_now(self) -> None:
        if self._lease is not None:
            self._lease.renew(self._clock())

    def _keep_lease(self) -> None:
        """Renew the lease during a long step (a seal or maintenance of a big backlog)."""
        if self._lease is not None and self._lease.held:
            now = self._clock()
            if now - self._lease.renewed_at > self.config.lease_ttl / 3:
                self._lease.renew(now)

    def _deliver(self, now: float, *, force: bool) -> Delivery | None:
        hb = heartbeats.pending(self.conn)
        if hb is None or (not force and now < self._next_attempt_at):
            return None
        self._step("before_post")
        d = self.sender().deliver(hb)
        self._step("after_post")
        self._mark(hb, d)
        self._step("after_mark")
        return d

    def _mark(self, hb: heartbeats.Heartbeat, d: Delivery) -> None:
        conn = self.conn
        at = int(self._clock())
        if d.result in ("sent", "rejected"):
            heartbeats.settle(
                conn,
                hb.id,
                status="sent" if d.result == "sent" else "rejected",
                now=at,
                attempts=d.attempts,
                receipt=d.receipt,
                error=d.error,
            )
            if d.result == "sent":
                log.info(
                    "delivered heartbeat %s (sequence %d, HTTP %s, %s, %d attempt(s)%s)",
                    hb.id,
                    hb.sequence,
                    d.status,
                    (d.receipt or {}).get("status", "no receipt"),
                    d.attempts,
                    f", after {self._failed_cycles} failed cycle(s)" if self._failed_cycles else "",
                )
            else:
                log.error(
                    "heartbeat %s (sequence %d) rejected by the receiver (%s); kept as "
                    "'rejected' for inspection (outbox heartbeats), not retried",
                    hb.id,
                    hb.sequence,
                    d.error,
                )
            self._failed_cycles = 0
            self._next_attempt_at = 0.0
            with transaction(conn):
                store.delete(conn, Meta.NEXT_ATTEMPT_AT)
            return
        with transaction(conn):
            if d.attempts:
                heartbeats.record_attempt(conn, hb.id, now=at, error=d.error, attempts=d.attempts)
            if d.result == "retired":
                store.put(conn, Meta.RETIRED_ENDPOINT, self.config.endpoint)
                store.delete(conn, Meta.NEXT_ATTEMPT_AT)
        if d.result == "retired":
            log.error(
                "the endpoint %s answered 410 Gone: it is retired. Nothing more is sent to it; "
                "heartbeat %s stays pending until HELIOS_TELEMETRY_ENDPOINT (or --endpoint) "
                "names a new one",
                self.config.endpoint,
                hb.id,
            )
            return
        if self.stop_event.is_set():
            return
        self._failed_cycles += 1
        delay = cycle_delay(self._failed_cycles, d.retry_after, u=self._rng.random())
        self._next_attempt_at = math.ceil(at + delay)
        store.put(conn, Meta.NEXT_ATTEMPT_AT, int(self._next_attempt_at))
        # One line per backoff window, whatever the number of attempts in it.
        log.warning(
            "heartbeat %s (sequence %d) not delivered: %s after %d attempt(s); "
            "it stays pending (next delivery cycle in %d s)",
            hb.id,
            hb.sequence,
            d.error,
            d.attempts,
            round(delay),
        )

    # -- maintenance ------------------------------------------------------------------------

    def maintain(self, now: float) -> bool:
        """Compaction, the size cap, purge past the retention period, checkpoint.

        :returns: False when a stop request interrupted it between two chunks.
        """
        conn, cfg, step = self.conn, self.config, self._step
        try:
            step("before_compact")
            maintenance.compact(conn, chunk=cfg.chunk, hook=step)
            step("before_capacity")
            lost = maintenance.enforce_capacity(
                conn, max_rows=cfg.max_rows, chunk=cfg.chunk, hook=step
            )
            if lost:
                log.warning(
                    "the outbox holds more than %d unsent rows after compaction: dropped the "
                    "oldest %d counts (reported as dropped.over_capacity)",
                    cfg.max_rows,
                    lost,
                )
            step("before_purge")
            purged = maintenance.purge(
                conn, now=int(now), older_than=cfg.retention, chunk=cfg.chunk, hook=step
            )
            if purged.heartbeats:
                log.info(
                    "purged %d heartbeat(s) settled more than %d days ago",
                    purged.heartbeats,
                    cfg.retention // 86400,
                )
        except _Interrupted:
            return False
        self._last_maintenance = now
        self._checkpoint(now)
        return True

    def _checkpoint(self, now: float) -> None:
        self._step("before_checkpoint")
        maintenance.checkpoint(self.conn, "PASSIVE")
        self._last_checkpoint = now
        self._step("checkpoint")

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
        wake = now + self.config.checkpoint_every
        if summary.mode != "off":
            if summary.pending is not None and summary.mode == "on" and not summary.retired:
                wake = min(wake, self._next_attempt_at)
            elif summary.pending is None and summary.next_due_at is not None:
                wake = min(wake, summary.next_due_at)
        return max(wake, now + 1.0)

    def run(self) -> int:
        """Cycle until stopped (then returns 0).

        A storage error fails one cycle (logged, meta ``last_cycle_error``) and the
        next is tried after a pause; a corrupt outbox is recovered in place.

        :raises LeaseLost: another worker took the outbox over.
        """
        errors = 0
        while not self.stop_event.is_set():
            now = self._clock()
            try:
                summary = self.tick(now)
                errors = 0
            except (sqlite3.Error, StorageError) as e:
                err = e if isinstance(e, StorageError) else translate(e, self.config.db_path)
                errors += 1
                summary = Summary(mode="error")
                self._cycle_failed(now, err, errors)
                if isinstance(err, OutboxCorrupt):
                    self._reopen()
            if errors:
                wake = now + min(300.0, 5.0 * 2 ** min(errors, 16))
            else:
                wake = self.next_wake(now, summary)
            if self._wait(max(0.0, wake - self._clock())):
                break
        log.info("stopping: the current step finished")
        return 0

    def _cycle_failed(self, now: float, err: StorageError, errors: int) -> None:
        if errors == 1 or errors & (errors - 1) == 0:  # 1, 2, 4, 8 ... not every time
            log.error("cycle failed (%d in a row): %s", errors, err)
        try:
            with transaction(self.conn):
                store.put(self.conn, Meta.LAST_CYCLE_ERROR, str(err)[:500])
                store.put(self.conn, Meta.LAST_CYCLE_AT, int(now))
            self._error_recorded = True
        except sqlite3.Error:
            pass

    def _reopen(self) -> None:
        """The outbox went bad while we ran: check it again, recovering if needed."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        now = self._clock()
        self._conn, _ = open_outbox(self.config.db_path, now=now)
        self._inode = _inode(self.config.db_path)
        self._lease = Lease(self._conn, ttl=self.config.lease_ttl)
        holder = self._lease.acquire(now)
        if holder is not None:
            raise LeaseHeld(f"another worker (pid {holder.pid}) took this outbox over")


def _inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
