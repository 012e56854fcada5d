"""Helios telemetry: opt-in, anonymous usage counts kept in a durable SQLite outbox.

::

    from outbox import telemetry
    telemetry.track_api_call("users.list")
    telemetry.track_command("sync")
    telemetry.track_ui_action("bulk_edit")

Importing this package, constructing a :class:`Telemetry` and calling a track
method never raise and never touch the disk until the first call.
"""

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
from outbox.names import api_name, is_valid_name
from outbox.settings import Decision, Settings
from outbox.settings import package_version as _package_version
from outbox.telemetry import Telemetry

__version__ = _package_version()

#: The process-wide instance, configured from the environment on first use.
telemetry = Telemetry()

__all__ = [
    "Decision",
    "OutboxBusy",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxMissing",
    "OutboxReadOnly",
    "SchemaMismatch",
    "Settings",
    "SettingsError",
    "StorageError",
    "Telemetry",
    "__version__",
    "api_name",
    "is_valid_name",
    "telemetry",
]
