"""What is and is not collected: the one list that the README, the settings
endpoint and the privacy page all show (a test keeps the README and docs/privacy.md
in step)."""

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

#: When heartbeats go (DESIGN.md section 5, ``worker/schedule.py``): the one sentence
#: that the in-app help, the privacy page, the README and docs/privacy.md use.
SCHEDULE: Final = (
    "Counts are kept on this server first and sent about once an hour (licensed) or once a "
    "day (community): each installation has its own time slot, so heartbeats are 0.8 to 1.2 "
    "intervals apart (48 to 72 minutes, or 19.2 to 28.8 hours), never less than 0.7 after a "
    "late one. The first goes 5 minutes after the worker starts, the second 0.7 to 2 "
    "intervals later, on the slot."
)
