"""Helios telemetry for web apps: ``pip install 'helios-telemetry[web]'`` (or ``[flask]``,
``[django]``).

Starlette and FastAPI (ASGI)::

    from outbox.web import RelayTracking, RouteTracking, telemetry_routes

    app = Starlette(routes=[*routes, *telemetry_routes(telemetry=t, ui_actions=["bulk_edit"])])
    app.add_middleware(RouteTracking, telemetry=t)           # names from route templates
    app.add_middleware(RelayTracking, prefix="/api/relay", telemetry=t)  # declared words

Flask: ``outbox.web.flask.init_app(app, telemetry=t, authorize=..., ui_actions=[...])``.
Django: ``"outbox.web.django.RouteTrackingMiddleware"`` in ``MIDDLEWARE``,
``include("outbox.web.django.urls")``, options in ``settings.HELIOS_TELEMETRY``.

In the page: ``<script type="module" src="/telemetry/static/telemetry.js">``,
then ``trackUIAction("bulk_edit")``. docs/integration.md is the guide; CLAUDE.md
lists the invariants.

Layout: the framework-neutral core (``naming``, ``counting``, ``validation``,
``authorize``, ``view``, ``page``, ``help``, ``endpoints``, ``writer``) imports no
web framework; ``asgi`` (pure ASGI) and ``wsgi`` (WSGI and the synchronous serving
steps) carry the tracking; ``starlette``, ``flask`` and ``django`` are the thin
adapters. Importing this package imports nothing: each name below is loaded on first
use, so no adapter pulls in another's framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outbox.commands import (
        COMMAND_NAME_PATTERN,
        CommandNameError,
        check_command_name,
        is_command_name,
        registered_commands,
        tracked_command,
    )
    from outbox.web.asgi import RelayTracking, RouteTracking
    from outbox.web.authorize import ACTIONS, Authorize, same_origin
    from outbox.web.counting import DEFAULT_RELAY_PREFIX
    from outbox.web.endpoints import TelemetryEndpoints
    from outbox.web.help import HELP_PARAGRAPHS, HELP_TEXT, HELP_TITLE, help_html, help_json
    from outbox.web.naming import (
        DEFAULT_RELAY_RESOURCES,
        TemplateRules,
        Vocabulary,
        name_from_template,
        not_tracked,
        track_as,
    )
    from outbox.web.page import Csrf, Paths, badge_html, html_attributes, privacy_page
    from outbox.web.starlette import TelemetryRoutes, telemetry_routes
    from outbox.web.validation import MAX_BODY_BYTES, MAX_NAMES, MAX_UI_COUNT
    from outbox.web.view import (
        BADGE_TEXT,
        DEFAULT_INSIGHTS_URL,
        DEFAULT_PRIVACY_POLICY_URL,
        TOGGLE_LABEL,
        Links,
        settings_view,
    )

_WHERE: dict[str, str] = {
    **dict.fromkeys(
        (
            "COMMAND_NAME_PATTERN",
            "CommandNameError",
            "check_command_name",
            "is_command_name",
            "registered_commands",
            "tracked_command",
        ),
        "outbox.commands",
    ),
    **dict.fromkeys(("RelayTracking", "RouteTracking"), "outbox.web.asgi"),
    **dict.fromkeys(("ACTIONS", "Authorize", "same_origin"), "outbox.web.authorize"),
    "DEFAULT_RELAY_PREFIX": "outbox.web.counting",
    "TelemetryEndpoints": "outbox.web.endpoints",
    **dict.fromkeys(
        ("HELP_PARAGRAPHS", "HELP_TEXT", "HELP_TITLE", "help_html", "help_json"), "outbox.web.help"
    ),
    **dict.fromkeys(
        (
            "DEFAULT_RELAY_RESOURCES",
            "TemplateRules",
            "Vocabulary",
            "name_from_template",
            "not_tracked",
            "track_as",
        ),
        "outbox.web.naming",
    ),
    **dict.fromkeys(
        ("Csrf", "Paths", "badge_html", "html_attributes", "privacy_page"), "outbox.web.page"
    ),
    **dict.fromkeys(("TelemetryRoutes", "telemetry_routes"), "outbox.web.starlette"),
    **dict.fromkeys(("MAX_BODY_BYTES", "MAX_NAMES", "MAX_UI_COUNT"), "outbox.web.validation"),
    **dict.fromkeys(
        (
            "BADGE_TEXT",
            "DEFAULT_INSIGHTS_URL",
            "DEFAULT_PRIVACY_POLICY_URL",
            "TOGGLE_LABEL",
            "Links",
            "settings_view",
        ),
        "outbox.web.view",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'outbox.web' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ACTIONS",
    "Authorize",
    "BADGE_TEXT",
    "COMMAND_NAME_PATTERN",
    "CommandNameError",
    "Csrf",
    "DEFAULT_INSIGHTS_URL",
    "DEFAULT_PRIVACY_POLICY_URL",
    "DEFAULT_RELAY_PREFIX",
    "DEFAULT_RELAY_RESOURCES",
    "HELP_PARAGRAPHS",
    "HELP_TEXT",
    "HELP_TITLE",
    "Links",
    "MAX_BODY_BYTES",
    "MAX_NAMES",
    "MAX_UI_COUNT",
    "Paths",
    "RelayTracking",
    "RouteTracking",
    "TOGGLE_LABEL",
    "TelemetryEndpoints",
    "TelemetryRoutes",
    "TemplateRules",
    "Vocabulary",
    "badge_html",
    "check_command_name",
    "help_html",
    "help_json",
    "html_attributes",
    "is_command_name",
    "name_from_template",
    "not_tracked",
    "privacy_page",
    "registered_commands",
    "same_origin",
    "settings_view",
    "telemetry_routes",
    "track_as",
    "tracked_command",
]
