"""What is and is not collected: the one list that the README, the settings
endpoint and the privacy page all show (a test keeps the README in step)."""

from __future__ import annotations

from typing import Final

COLLECTED: Final[tuple[str, ...]] = (
    "How often each relayed API is called, by name (for example users.list, groups.get)",
    "How often each command runs, by name (for example sync, deploy, export)",
    "How often each UI action is used, by name (for example bulk_edit, export_csv)",
    "Those counts per UTC day",
    "The Helios version and edition (community or licensed)",
    "A random instance id made once for this installation (not derived from the machine)",
    (
        "How many events could not be recorded, by reason "
        "(invalid name, unknown UI action, storage error, over capacity)"
    ),
)

NOT_COLLECTED: Final[tuple[str, ...]] = (
    "User names, email addresses or any other personal data",
    "Hostnames, IP addresses or URLs of this installation",
    "Request paths, ids, query strings, bodies or any content you manage",
    "Exact times of individual actions (only daily counts)",
    "Anything at all while telemetry is off",
)
