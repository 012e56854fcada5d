"""The in-app help widget's text about telemetry.

:data:`HELP_TITLE` and :data:`HELP_PARAGRAPHS` are the text; the routes serve it
as JSON (``GET /api/telemetry/help``) and as an HTML fragment
(``GET /telemetry/help``) for widgets that insert markup as it comes.
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

from outbox import disclosure
from outbox.web.view import TOGGLE_LABEL, Links

HELP_TITLE: Final = "Usage data and privacy"

HELP_PARAGRAPHS: Final[tuple[str, ...]] = (
    "Helios can share anonymous usage counts with the Helios project: how often each "
    "API, command and button is used, by name. It helps the project decide what to "
    "improve and what it can safely change.",
    "Sharing is off until an administrator turns it on with the setting "
    f"\u201c{TOGGLE_LABEL}\u201d on the Privacy page. It can be turned off there at any "
    "time; whatever was collected and not yet sent is then deleted.",
    f"{disclosure.SCHEDULE} Nothing about your users, your data or your network is ever included.",
    "Your server administrator can also turn it off for good with the DO_NOT_TRACK=1 "
    "or HELIOS_TELEMETRY_ENABLED=false environment variables; the Privacy page then "
    "says so.",
)

#: The whole help text as plain paragraphs separated by blank lines.
HELP_TEXT: Final = "\n\n".join((HELP_TITLE, *HELP_PARAGRAPHS))


def help_json(links: Links, settings_path: str) -> dict[str, Any]:
    """The body of ``GET /api/telemetry/help``."""
    return {
        "title": HELP_TITLE,
        "paragraphs": list(HELP_PARAGRAPHS),
        "collected": list(disclosure.COLLECTED),
        "not_collected": list(disclosure.NOT_COLLECTED),
        "settings_url": settings_path,
        "privacy_policy_url": links.privacy_policy_url,
        "insights_url": links.insights_url,
    }


def help_html(links: Links, settings_path: str) -> str:
    """The help text as an HTML fragment (a ``<section>``), every value escaped."""
    paragraphs = "\n".join(f"  <p>{escape(p)}</p>" for p in HELP_PARAGRAPHS)
    return (
        '<section class="helios-help" aria-labelledby="helios-help-title">\n'
        f'  <h2 id="helios-help-title">{escape(HELP_TITLE)}</h2>\n'
        f"{paragraphs}\n"
        f'  <p><a href="{escape(settings_path)}">Privacy settings</a> \u00b7 '
        f'<a href="{escape(links.privacy_policy_url)}">Privacy policy</a> \u00b7 '
        f'<a href="{escape(links.insights_url)}">Public insights dashboard</a></p>\n'
        "</section>\n"
    )
