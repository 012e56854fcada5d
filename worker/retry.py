"""The retry policy, as data: what an HTTP answer means, and how long to wait before the next try.

:func:`classify` turns a status and headers into an outcome — :class:`Sent`,
:class:`Retry`, :class:`Rejected` or :class:`Retired` — with no I/O. The waits are
tenacity strategies, testable on a built ``RetryCallState``:

* within one delivery cycle, :class:`RetryPolicy` retries network errors, timeouts,
  408, 429 and 5xx with exponential backoff and full jitter
  (``wait_random_exponential``, capped at ``max_wait``), and honours
  ``Retry-After`` as a minimum (:class:`wait_retry_after`); it stops after
  ``attempts`` tries, or at once when the receiver asks for a longer pause than
  this cycle may wait (:class:`stop_if_retry_after_exceeds`);
* between cycles, :func:`cycle_delay` spaces the cycles out (1 minute doubling up
  to an hour, or the receiver's ``Retry-After`` up to a day). The worker logs one
  line per failed cycle: one per backoff window, not one per attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    stop_when_event_set,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from worker.errors import RetryableDelivery

#: Answers worth trying again: the receiver may take it later.
RETRYABLE_STATUSES: Final = frozenset({408, 429} | set(range(500, 600)))
#: Answers saying "this payload will never be accepted": kept as ``rejected``, not retried.
REJECTED_STATUSES: Final = frozenset({400, 409, 413, 422})
#: The endpoint is retired: stop sending until the endpoint setting changes.
RETIRED_STATUS: Final = 410

#: Between failed cycles: first pause, and the longest.
CYCLE_BASE: Final = 60.0
CYCLE_CAP: Final = 3600.0
#: The longest ``Retry-After`` honoured between cycles.
RETRY_AFTER_CAP: Final = 86400.0


@dataclass(frozen=True)
class Sent:
    status: int


@dataclass(frozen=True)
class Retry:
    status: int | None  # None: no answer (network error, timeout)
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Rejected:
    status: int
    reason: str


@dataclass(frozen=True)
class Retired:
    status: int = RETIRED_STATUS


Outcome = Sent | Retry | Rejected | Retired


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now`` (delta-seconds or an HTTP date); None if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, when.timestamp() - now)


def classify(status: int, headers: Mapping[str, str], *, now: float) -> Outcome:
    """What an HTTP answer means for a heartbeat.

    2xx → sent; 408, 429, 5xx → retry (with ``Retry-After`` if given); 410 →
    the endpoint is retired; 400, 409, 413, 422 and every other 4xx → rejected.
    Anything else (1xx, a 3xx redirect) is retried: nothing is marked rejected
    unless the receiver said so, and the worker logs what it got.
    """
    h = {k.lower(): v for k, v in headers.items()}
    if 200 <= status < 300:
        return Sent(status)
    if status in RETRYABLE_STATUSES:
        return Retry(status, f"HTTP {status}", parse_retry_after(h.get("retry-after"), now=now))
    if status == RETIRED_STATUS:
        return Retired(status)
    if status in REJECTED_STATUSES or 400 <= status < 500:
        return Rejected(status, f"HTTP {status}")
    where = h.get("location")
    return Retry(
        status,
        f"HTTP {status}" + (f" (the endpoint redirects to {where}; update it)" if where else ""),
    )


def _retry_after_of(state: RetryCallState) -> float | None:
    if state.outcome is None or not state.outcome.failed:
        return None
    exc = state.outcome.exception()
    return exc.outcome.retry_after if isinstance(exc, RetryableDelivery) else None


class wait_retry_after(wait_base):
    """``max(backoff, Retry-After)``, the ``Retry-After`` part clamped to ``[0, cap]``."""

    def __init__(self, backoff: wait_base, cap: float) -> None:
        self.backoff = backoff
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.backoff(retry_state))
        asked = _retry_after_of(retry_state)
        if asked is not None:
            wait = max(wait, min(max(asked, 0.0), self.cap))
        return wait


class stop_if_retry_after_exceeds(stop_base):
    """Stop this cycle when the receiver asks for a longer pause than the cycle may wait.

    Retrying after ``limit`` seconds would knock before the receiver is ready;
    the heartbeat stays pending and :func:`cycle_delay` waits what was asked.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        asked = _retry_after_of(retry_state)
        return asked is not None and asked > self.limit


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery cycle and the longest single wait between them."""

    attempts: int = 5
    max_wait: float = 60.0
    multiplier: float = 1.0

    def wait(self) -> wait_base:
        return wait_retry_after(
            wait_random_exponential(multiplier=self.multiplier, max=self.max_wait), self.max_wait
        )

    def stop(self, stop_event: threading.Event | None = None) -> stop_base:
        interrupted = stop_never if stop_event is None else stop_when_event_set(stop_event)
        return (
            stop_after_attempt(self.attempts)
            | stop_if_retry_after_exceeds(self.max_wait)
            | interrupted
        )

    def retrying(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` for one delivery cycle; re-raises the last failure."""
        return Retrying(
            stop=self.stop(stop_event),
            wait=self.wait(),
            retry=retry_if_exception_type(RetryableDelivery),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


def cycle_delay(failed_cycles: int, retry_after: float | None, *, u: float) -> float:
    """Seconds to wait before the next delivery cycle after ``failed_cycles`` in a row failed.

    :param u: a number in [0, 1) (the caller's randomness): the pause is between
        half and all of ``CYCLE_BASE * 2**(failed_cycles - 1)``, capped at ``CYCLE_CAP``.
    :param retry_after: the receiver's last ``Retry-After``, honoured up to a day.
    """
    base = min(CYCLE_CAP, CYCLE_BASE * 2 ** max(0, failed_cycles - 1))
    delay = base * (0.5 + 0.5 * u)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return float(delay)
