"""Helios telemetry for a Starlette (ASGI) web app: ``pip install 'helios-telemetry[web]'``.

::

    from outbox.web import RelayTracking, telemetry_routes, tracked_command

    app = Starlette(routes=[*routes, *telemetry_routes(ui_actions=["bulk_edit"])])
    app.add_middleware(RelayTracking, prefix="/api/relay")

    @tracked_command("sync")
    async def sync() -> None: ...

and in the page: ``<script type="module" src="/telemetry/static/telemetry.js">``,
then ``trackUIAction("bulk_edit")``. README section "Integrating with the
Helios web app" is the guide; CLAUDE.md lists the invariants.
"""

from outbox.web.authorize import ACTIONS, Authorize, same_origin
from outbox.web.commands import (
    COMMAND_NAME_PATTERN,
    CommandNameError,
    check_command_name,
    is_command_name,
    registered_commands,
    tracked_command,
)
from outbox.web.help import HELP_PARAGRAPHS, HELP_TEXT, HELP_TITLE, help_html, help_json
from outbox.web.middleware import DEFAULT_RELAY_PREFIX, RelayTracking
from outbox.web.page import Paths, badge_html, html_attributes, privacy_page
from outbox.web.routes import TelemetryEndpoints, telemetry_routes
from outbox.web.validation import MAX_BODY_BYTES, MAX_NAMES, MAX_UI_COUNT
from outbox.web.view import (
    BADGE_TEXT,
    DEFAULT_INSIGHTS_URL,
    DEFAULT_PRIVACY_POLICY_URL,
    TOGGLE_LABEL,
    Links,
    settings_view,
)

__all__ = [
    "ACTIONS",
    "BADGE_TEXT",
    "COMMAND_NAME_PATTERN",
    "DEFAULT_INSIGHTS_URL",
    "DEFAULT_PRIVACY_POLICY_URL",
    "DEFAULT_RELAY_PREFIX",
    "HELP_PARAGRAPHS",
    "HELP_TEXT",
    "HELP_TITLE",
    "MAX_BODY_BYTES",
    "MAX_NAMES",
    "MAX_UI_COUNT",
    "TOGGLE_LABEL",
    "Authorize",
    "CommandNameError",
    "Links",
    "Paths",
    "RelayTracking",
    "TelemetryEndpoints",
    "badge_html",
    "check_command_name",
    "help_html",
    "help_json",
    "html_attributes",
    "is_command_name",
    "privacy_page",
    "registered_commands",
    "same_origin",
    "settings_view",
    "telemetry_routes",
    "tracked_command",
]
