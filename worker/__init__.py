"""The Helios telemetry worker: seals the outbox into heartbeats and delivers each exactly once.

Run it as ``outbox-worker`` or ``python -m worker``. From Python::

    from outbox import Config
    from worker import Options, Worker
    w = Worker(Config.from_env(), Options())
    w.open()
    summary = w.tick(time.time(), force=True)   # what ``--once`` does
    w.close()

Pieces: :mod:`worker.schedule` (when, pure), :mod:`worker.retry` (what an answer
means and how long to wait, as tenacity data), :mod:`worker.sender` (one HTTP
client, POST with retries) over :mod:`worker.transport` (deadline, answer limit,
proxies), :mod:`worker.lease` (one worker per outbox), :mod:`worker.recovery`
(start-up check of the outbox), :mod:`worker.handle` (the file and the lease),
:mod:`worker.mode` (what a cycle may do: send, keep local, erase or hold back),
:mod:`worker.delivery` (deliver and mark, backoff between cycles),
:mod:`worker.pacing` and :mod:`worker.maintain` (long steps in short transactions),
:mod:`worker.loop` (``tick``/``run``), :mod:`worker.__main__` (the command line).
"""

from worker.errors import (
    DeliveryError,
    LeaseHeld,
    LeaseLost,
    RetryableDelivery,
    Withdrawn,
    WorkerError,
)
from worker.loop import Summary, Worker
from worker.options import Options
from worker.pacing import STEPS
from worker.retry import RetryPolicy
from worker.sender import Delivery, Sender

__all__ = [
    "STEPS",
    "Delivery",
    "DeliveryError",
    "LeaseHeld",
    "LeaseLost",
    "Options",
    "RetryPolicy",
    "RetryableDelivery",
    "Sender",
    "Summary",
    "Withdrawn",
    "Worker",
    "WorkerError",
]
