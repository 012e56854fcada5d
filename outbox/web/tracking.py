"""What every tracking middleware shares, ASGI or WSGI: the telemetry it counts into, the
writer thread, the per-source tally and its flush to the outbox.

:class:`Tracking` is the base of :mod:`outbox.web.asgi`'s middlewares and of
:class:`outbox.web.wsgi.SyncTracking`; each says how a due flush runs (on the event
loop's executor, or in a short-lived thread). No framework import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from outbox import store
from outbox.db import transaction
from outbox.errors import OutboxError
from outbox.web.counting import Flush, Outcome, Tally
from outbox.web.endpoints import default_telemetry
from outbox.web.writer import CountWriter

if TYPE_CHECKING:
    from outbox.client import Telemetry

log = logging.getLogger("outbox.web")

#: Seconds between two writes of a middleware's tally to the outbox (at most).
DEFAULT_FLUSH_EVERY: Final = 60.0

Writes = Literal["thread", "inline"]


class Tracking:
    """What every tracking middleware shares (ASGI and WSGI): the telemetry, the write,
    the tally and its flush. A subclass says how a due flush runs (:meth:`_check_and_flush`)."""

    def __init__(
        self,
        app: Any,
        *,
        telemetry: Telemetry | None,
        source: str,
        check_after: int,
        flush_every: float,
        writes: Writes,
        warn: Callable[[Mapping[str, int]], str | None],
    ) -> None:
        if writes not in ("thread", "inline"):
            raise ValueError(f"writes={writes!r}: use 'thread' or 'inline'")
        if check_after < 1 or flush_every < 0:
            raise ValueError("check_after must be at least 1 and flush_every at least 0")
        self.app = app
        self._telemetry = telemetry
        self.tally = Tally(source, warn)
        self.check_after = check_after
        self.flush_every = flush_every
        self.writes = writes
        self._next_flush = time.monotonic() + flush_every
        self._failed_once = False
        self.writer = CountWriter(lambda: self.telemetry, source=source)

    @property
    def telemetry(self) -> Telemetry:
        if self._telemetry is None:
            self._telemetry = default_telemetry()
        return self._telemetry

    # -- the per-request path -----------------------------------------------------------

    def _record(self, outcome: Outcome, name: str | None) -> None:
        """Tally one request; store its count (or its unknown_name drop)."""
        due = self._tally(outcome)
        if outcome is Outcome.COUNTED or outcome is Outcome.UNKNOWN_NAME:
            if self.writes == "thread":
                self.writer.put(name)
            else:
                self._write(name)
        if due:
            self._check_and_flush()

    def _tally(self, outcome: Outcome) -> bool:
        """Add ``outcome`` to the tally; True when the tally is due to be checked and flushed."""
        self.tally.add(outcome)
        return self.tally.seen == self.check_after or time.monotonic() >= self._next_flush

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every count handed to the writer thread is stored (tests, shutdown)."""
        return self.writer.drain(timeout)

    def _write(self, name: str | None) -> None:
        try:
            if name is None:
                self.telemetry.count_dropped("unknown_name")
            else:
                self.telemetry.track_api_call(name)
        except Exception:  # a track call never raises; this guards the request anyway
            if not self._failed_once:
                self._failed_once = True
                log.warning(
                    "telemetry: %s failed (request unaffected)", self.tally.source, exc_info=True
                )

    # -- the tally: warning and flush ------------------------------------------------------

    def _check_and_flush(self) -> None:
        """Log the tally's warning, if any, and write the tally off the request path."""
        raise NotImplementedError

    def flush(self) -> bool:
        """Write the tally's unflushed counts to the outbox now (blocking; never raises).

        Nothing is written while telemetry is off or before the outbox exists.

        :returns: True when something was written.
        """
        batch = self.tally.take()
        if batch is None:
            return False
        try:
            written = _write_tally(self.telemetry, batch)
        except Exception:  # noqa: BLE001  # the next flush retries; never into a request
            written = None
        if written is None:
            self.tally.restore(batch)
        return bool(written)


def _write_tally(telemetry: Telemetry, batch: Flush) -> bool | None:
    """True: written; False: telemetry is off, the counts go; None: not written (no outbox
    yet, or it failed), keep the counts for the next flush."""
    try:
        with telemetry.connect(create=False) as conn:
            if not telemetry.config.decision(store.org_enabled(conn)).collecting:
                return False
            now = int(time.time())
            with transaction(conn):
                store.add_web_tracking(
                    conn, batch.source, batch.delta, warning=batch.warning, now=now
                )
            return True
    except OutboxError:  # OutboxMissing included: nothing was collected yet
        return None
