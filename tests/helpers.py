"""Old import path of a few names of ``tests.support``, kept for ``tests/web`` (another
change is adding tests there now): new code imports from ``tests.support`` directly.
Remove this module once nothing imports it (``grep -r tests.helpers tests``)."""

from tests.support.clock import T0, FakeClock
from tests.support.env import TELEMETRY_VARIABLES, child_env, free_port
from tests.support.outboxes import INSTANCE_ID
from tests.support.totals import totals

__all__ = [
    "INSTANCE_ID",
    "T0",
    "TELEMETRY_VARIABLES",
    "FakeClock",
    "child_env",
    "free_port",
    "totals",
]
