"""Exceptions of the worker package.

Everything the worker raises on purpose descends from :class:`outbox.OutboxError`,
so the command line has one place to turn them into a clear line and an exit code::

    OutboxError                      (outbox.errors)
    └── WorkerError
        ├── LeaseHeld                another worker holds this outbox (exit 2)
        ├── LeaseLost                our lease was taken over while we ran (exit 2)
        └── DeliveryError
            ├── RetryableDelivery    one attempt failed in a way worth retrying
            └── Withdrawn            the heartbeat may not go any more (switched off, gone)

``httpx.TransportError`` is translated into :class:`RetryableDelivery` at the
boundary (``worker.sender``); a permanent answer (400, 409, 410, ...) is not an
exception but an outcome (``worker.retry.classify``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbox.errors import OutboxError

if TYPE_CHECKING:
    from worker.retry import Retry


class WorkerError(OutboxError):
    """Base class of the worker's own errors."""


class LeaseHeld(WorkerError):
    """Another live worker holds the outbox lease."""


class LeaseLost(WorkerError):
    """Another worker took the lease over (ours had expired)."""


class DeliveryError(WorkerError):
    """A heartbeat could not be delivered."""


class RetryableDelivery(DeliveryError):
    """One attempt failed (network error, timeout, 408, 429, 5xx): try again later."""

    def __init__(self, outcome: Retry) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class Withdrawn(DeliveryError):
    """Before an attempt: telemetry was switched off, or the heartbeat is no longer pending."""
