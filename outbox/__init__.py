"""Helios telemetry: opt-in, anonymous usage counts kept in a durable SQLite outbox.

::

    from outbox import telemetry
    telemetry.track_api_call("users.list")
    telemetry.track_command("sync")
    telemetry.track_ui_action("bulk_edit")

Importing this package, constructing a :class:`Telemetry` and calling a track
method never raise and never touch the disk until the first call. Importing it
loads nothing: each name below is imported on first use, so a program that needs
only the wire contract (``outbox.contract``, the collector) loads only that.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outbox.client import Telemetry
    from outbox.config import Config, Decision
    from outbox.contract import is_valid_name
    from outbox.errors import (
        OutboxBusy,
        OutboxCorrupt,
        OutboxError,
        OutboxMissing,
        OutboxReadOnly,
        SchemaMismatch,
        SettingsError,
        StorageError,
    )

    #: The process-wide instance, configured from the environment on first use.
    telemetry: Telemetry
    __version__: str

_WHERE = {
    "Telemetry": "outbox.client",
    "Config": "outbox.config",
    "Decision": "outbox.config",
    "is_valid_name": "outbox.contract",
    **dict.fromkeys(
        (
            "OutboxBusy",
            "OutboxCorrupt",
            "OutboxError",
            "OutboxMissing",
            "OutboxReadOnly",
            "SchemaMismatch",
            "SettingsError",
            "StorageError",
        ),
        "outbox.errors",
    ),
}
_singleton_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    elif name == "telemetry":
        with _singleton_lock:
            if "telemetry" in globals():
                return globals()["telemetry"]
            from outbox.client import Telemetry

            value = Telemetry()
    elif name == "__version__":
        from outbox.config import package_version

        value = package_version()
    else:
        raise AttributeError(f"module 'outbox' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "Config",
    "Decision",
    "OutboxBusy",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxMissing",
    "OutboxReadOnly",
    "SchemaMismatch",
    "SettingsError",
    "StorageError",
    "Telemetry",
    "__version__",
    "is_valid_name",
    "telemetry",
]
