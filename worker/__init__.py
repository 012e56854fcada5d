"""The Helios telemetry worker: seals the outbox into heartbeats and delivers each exactly once.

Run it as ``outbox-worker`` or ``python -m worker``. From Python::

    from worker import Config, Worker
    w = Worker(Config.from_settings(Settings.from_env()))
    w.open()
    summary = w.tick(time.time(), force=True)   # what ``--once`` does
    w.close()

Pieces: :mod:`worker.schedule` (when, pure), :mod:`worker.retry` (what an answer
means and how long to wait, as tenacity data), :mod:`worker.sender` (one HTTP
client, POST with retries), :mod:`worker.lease` (one worker per outbox),
:mod:`worker.recovery` (start-up check of the outbox), :mod:`worker.loop`
(``tick``/``run``), :mod:`worker.__main__` (the command line).
"""

from worker.errors import DeliveryError, LeaseHeld, LeaseLost, RetryableDelivery, WorkerError
from worker.loop import STEPS, Config, Summary, Worker
from worker.retry import RetryPolicy
from worker.sender import Delivery, Sender

__all__ = [
    "STEPS",
    "Config",
    "Delivery",
    "DeliveryError",
    "LeaseHeld",
    "LeaseLost",
    "RetryPolicy",
    "RetryableDelivery",
    "Sender",
    "Summary",
    "Worker",
    "WorkerError",
]
