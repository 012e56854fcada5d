"""What the settings endpoint and the privacy page say: pure functions of a Decision.

The lists of what is and is not collected come from :mod:`outbox.disclosure`,
the one source that the README shows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from outbox import disclosure
from outbox.config import Decision
from outbox.store import Discarded

DEFAULT_PRIVACY_POLICY_URL: Final = "https://helios.gridworx.io/privacy"
DEFAULT_INSIGHTS_URL: Final = "https://helios.gridworx.io/insights"

TOGGLE_LABEL: Final = "Help improve Helios by sharing anonymous usage data"
BADGE_TEXT: Final = "Contributing to Helios"


@dataclass(frozen=True)
class Links:
    """Where the privacy policy and the public insights dashboard are."""

    privacy_policy_url: str = DEFAULT_PRIVACY_POLICY_URL
    insights_url: str = DEFAULT_INSIGHTS_URL

    def __post_init__(self) -> None:
        for label, url in (
            ("privacy_policy_url", self.privacy_policy_url),
            ("insights_url", self.insights_url),
        ):
            check_link(label, url)


def check_link(label: str, url: str) -> str:
    """An ``http(s)://`` URL or a path on this site; anything else (``javascript:``) is refused.

    :raises ValueError: naming the parameter.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if not parts.scheme and not parts.netloc and url.startswith("/") and not url.startswith("//"):
        return url
    raise ValueError(f"{label}={url!r}: use an https:// URL or a path starting with '/'")


def locked_by(decision: Decision) -> str | None:
    """The environment variable that locks the state, or None when it is not locked."""
    return decision.source if decision.locked else None


def headline(decision: Decision) -> str:
    """One sentence: is usage shared, and what decided it."""
    state = {
        "on": "Sharing is on",
        "local": "Usage is collected on this server but never sent",
        "off": "Sharing is off",
    }[decision.mode]
    return f"{state}: {decision.reason}."


def lock_message(decision: Decision) -> str | None:
    """Why the toggle is disabled and how to unlock it, or None when it is not locked."""
    variable = locked_by(decision)
    if variable is None:
        return None
    if variable == "DO_NOT_TRACK":
        state, fix = "DO_NOT_TRACK is set", "unset it"
    else:
        state, fix = f"{variable} is false", "unset it (or set it to true)"
    return (
        f"This setting is locked: {state} in the Helios server's environment. "
        f"To choose here, {fix} and restart Helios."
    )


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as the ``authorize`` hook answered: may they switch sharing?

    :param hook: the app passed an ``authorize`` hook (without one nobody may switch here).
    :param admin: the hook granted ``admin`` for this request.
    """

    hook: bool = False
    admin: bool = False


def may_change(decision: Decision, viewer: Viewer) -> bool:
    """True when this viewer can switch sharing here now."""
    return viewer.admin and not decision.locked


def change_note(decision: Decision, viewer: Viewer) -> str | None:
    """Why this viewer cannot switch (None when they can, or when the lock explains it)."""
    if decision.locked or viewer.admin:
        return None
    if not viewer.hook:
        return (
            "This setting is read-only here: the app has no administrator check configured. "
            "An administrator can switch it on the server with `outbox enable` or "
            "`outbox disable`."
        )
    return "Only an administrator can change this setting."


def settings_view(
    decision: Decision,
    links: Links,
    *,
    viewer: Viewer | None = None,
    worker_warning: str | None = None,
) -> dict[str, Any]:
    """The body of ``GET /api/settings/telemetry``.

    :param worker_warning: :attr:`outbox.health.WorkerHealth.message` (sharing is on and
        no worker sends).
    """
    viewer = viewer or Viewer()
    return {
        "enabled": decision.collecting,
        "mode": decision.mode,
        "sharing": decision.sending,
        "locked": decision.locked,
        "locked_by": locked_by(decision),
        "source": decision.source,
        "reason": decision.reason,
        "headline": headline(decision),
        "lock_message": lock_message(decision),
        "collected": list(disclosure.COLLECTED),
        "not_collected": list(disclosure.NOT_COLLECTED),
        "privacy_policy_url": links.privacy_policy_url,
        "insights_url": links.insights_url,
        "schedule": disclosure.SCHEDULE,
        "worker_warning": worker_warning,
        "may_change": may_change(decision, viewer),
        "change_note": change_note(decision, viewer),
    }


def discarded_message(discarded: Discarded) -> str:
    """What switching off deleted, in words."""
    if not discarded.events and not discarded.heartbeats:
        return "Nothing unsent was waiting; nothing was deleted."
    parts = []
    if discarded.events:
        parts.append(f"{discarded.events} unsent event{'s' if discarded.events != 1 else ''}")
    if discarded.heartbeats:
        n = discarded.heartbeats
        parts.append(f"{n} unsent heartbeat{'s' if n != 1 else ''}")
    return f"Deleted {' and '.join(parts)}: nothing collected before this is sent."


def update_view(
    decision: Decision,
    links: Links,
    discarded: Discarded,
    *,
    worker_warning: str | None = None,
) -> dict[str, Any]:
    """The body of a successful ``PUT /api/settings/telemetry`` (made by an administrator)."""
    viewer = Viewer(hook=True, admin=True)
    return {
        **settings_view(decision, links, viewer=viewer, worker_warning=worker_warning),
        "discarded": {"events": discarded.events, "heartbeats": discarded.heartbeats},
        "message": discarded_message(discarded),
    }
