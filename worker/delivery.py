"""Delivering the pending heartbeat and recording the outcome, with the backoff between cycles.

:meth:`Deliverer.deliver` POSTs the heartbeat left pending (through one
:class:`~worker.sender.Sender`, built on first use and never while telemetry is
off), then marks it in one transaction: ``sent`` (2xx), ``rejected`` (a 4xx
meaning "never"), or it stays ``pending`` and the next delivery cycle waits
(:func:`worker.retry.cycle_delay`; one warning per failed cycle, not per attempt).

Before every attempt :meth:`Deliverer.gate` reads, in one statement, the
organisation's choice and the heartbeat's status: an opt-out that lands between two
attempts (or during a slow one) stops the delivery before the next POST.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable

import httpx

from outbox import heartbeats, store
from outbox.config import Config
from outbox.db import transaction
from outbox.heartbeats import Heartbeat
from outbox.store import Meta
from worker.handle import OutboxHandle
from worker.options import Options
from worker.pacing import Hook
from worker.retry import cycle_delay
from worker.sender import Delivery, Sender

log = logging.getLogger("worker")


class Deliverer:
    """Delivery for one worker: the sender, the backoff state, marking."""

    def __init__(
        self,
        handle: OutboxHandle,
        config: Config,
        options: Options,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None,
        stop_event: threading.Event,
        rng: random.Random,
        observe: Hook,
        new_id: Callable[[], str],
    ) -> None:
        self._handle = handle
        self._config = config
        self._options = options
        self._clock = clock
        self._sleep = sleep
        self._transport = transport
        self._stop_event = stop_event
        self._rng = rng
        self._observe = observe
        self._new_id = new_id
        self._sender: Sender | None = None
        #: No delivery cycle before this (unix seconds), after a failed one.
        self.next_attempt_at = 0.0
        self.failed_cycles = 0

    def sender(self) -> Sender:
        """The one HTTP sender of this worker, built on first use (never while off)."""
        if self._sender is None:
            self._sender = Sender(
                endpoint=self._config.endpoint,
                version=self._config.version,
                policy=self._options.retry,
                secret=store.credentials(self._handle.conn, self._new_id).secret,
                transport=self._transport,
                connect_timeout=self._options.connect_timeout,
                read_timeout=self._options.read_timeout,
                attempt_timeout=self._options.attempt_timeout,
                max_answer=self._options.max_answer,
                clock=self._clock,
                sleep=self._sleep,
                stop_event=self._stop_event,
                on_wait=self._handle.keep_lease,
                gate=self.gate,
            )
        return self._sender

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def gate(self, hb: Heartbeat) -> str | None:
        """None while ``hb`` may go; else why not (read in one statement before each attempt)."""
        org, status = store.sendable(self._handle.conn, hb.id)
        decision = self._config.decision(org)
        if not decision.sending:
            return f"telemetry was switched off ({decision.reason})"
        if status != "pending":
            return f"heartbeat {hb.id} is no longer pending ({status or 'deleted'})"
        return None

    def retired(self) -> bool:
        """True while the configured endpoint is the one that answered 410."""
        conn = self._handle.conn
        retired = store.get(conn, Meta.RETIRED_ENDPOINT)
        if retired is None:
            return False
        if str(retired) == self._config.endpoint:
            return True
        store.delete(conn, Meta.RETIRED_ENDPOINT)
        log.info("endpoint changed from the retired %s: sending again", retired)
        return False

    def deliver(self, now: float, *, force: bool) -> Delivery | None:
        """Deliver the pending heartbeat, unless none is, or its backoff window is not over."""
        hb = heartbeats.pending(self._handle.conn)
        if hb is None or (not force and now < self.next_attempt_at):
            return None
        self._observe("before_post")
        d = self.sender().deliver(hb)
        self._observe("after_post")
        self._mark(hb, d)
        self._observe("after_mark")
        return d

    def _mark(self, hb: Heartbeat, d: Delivery) -> None:
        conn = self._handle.conn
        at = int(self._clock())
        if d.result == "withdrawn":
            log.info(
                "stopped delivering heartbeat %s before attempt %d: %s",
                hb.id,
                d.attempts + 1,
                d.error,
            )
            if d.attempts:
                heartbeats.record_attempt(conn, hb.id, now=at, error=None, attempts=d.attempts)
            return
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
            self._settled(hb, d)
            return
        with transaction(conn):
            if d.attempts:
                heartbeats.record_attempt(conn, hb.id, now=at, error=d.error, attempts=d.attempts)
            if d.result == "retired":
                store.put(conn, Meta.RETIRED_ENDPOINT, self._config.endpoint)
                store.delete(conn, Meta.NEXT_ATTEMPT_AT)
        if d.result == "retired":
            log.error(
                "the endpoint %s answered 410 Gone: it is retired. Nothing more is sent to it; "
                "heartbeat %s stays pending until HELIOS_TELEMETRY_ENDPOINT (or --endpoint) "
                "names a new one",
                self._config.endpoint,
                hb.id,
            )
            return
        if self._stop_event.is_set():
            return
        self.failed_cycles += 1
        delay = cycle_delay(self.failed_cycles, d.retry_after, u=self._rng.random())
        self.next_attempt_at = math.ceil(at + delay)
        store.put(conn, Meta.NEXT_ATTEMPT_AT, int(self.next_attempt_at))
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

    def _settled(self, hb: Heartbeat, d: Delivery) -> None:
        if d.result == "sent":
            log.info(
                "delivered heartbeat %s (sequence %d, HTTP %s, %s, %d attempt(s)%s)",
                hb.id,
                hb.sequence,
                d.status,
                (d.receipt or {}).get("status", "no receipt"),
                d.attempts,
                f", after {self.failed_cycles} failed cycle(s)" if self.failed_cycles else "",
            )
        else:
            log.error(
                "heartbeat %s (sequence %d) rejected by the receiver (%s); kept as "
                "'rejected' for inspection (outbox heartbeats), not retried",
                hb.id,
                hb.sequence,
                d.error,
            )
        self.failed_cycles = 0
        self.next_attempt_at = 0.0
        with transaction(self._handle.conn):
            store.delete(self._handle.conn, Meta.NEXT_ATTEMPT_AT)
