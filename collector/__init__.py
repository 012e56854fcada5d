"""The reference receiving service for Helios telemetry heartbeats.

``POST /api/instances/heartbeat`` validates schema version 1, takes a heartbeat only
with its instance's secret, and counts each exactly once; ``GET /insights`` is the
public dashboard, k-anonymous. Run it with
``outbox-collector`` (or ``python -m collector``); embed it with::

    from collector import Storage, create_app
    app = create_app(Storage("collector.db"))
"""

from collector.app import create_app
from collector.errors import (
    CollectorError,
    PayloadError,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    Unauthorized,
)
from collector.storage import Forgotten, InstanceInfo, Outcome, Storage
from collector.validate import Heartbeat, Limits, parse

__all__ = [
    "CollectorError",
    "Forgotten",
    "Heartbeat",
    "InstanceInfo",
    "Limits",
    "Outcome",
    "PayloadError",
    "SchemaTooNew",
    "Storage",
    "StorageBusy",
    "StorageError",
    "Unauthorized",
    "create_app",
    "parse",
]
