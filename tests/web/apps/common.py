"""One API, four frameworks: what every contract app serves, configured by the environment.

``CONTRACT_HOOK``: ``header`` (default: ``X-Role: admin`` is an administrator,
``X-Deny: yes`` is refused everything else) or ``none`` (no hook).
``CONTRACT_ORIGINS``: the declared origins, comma-separated (unset: none declared).
The outbox is the ``outbox.telemetry`` singleton (``HELIOS_TELEMETRY_DB``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from outbox.web import DEFAULT_RELAY_RESOURCES

UI_ACTIONS = ("bulk_edit", "export_csv", "column_sort")
RELAY_PREFIX = "/api/relay"
RELAY_RESOURCES = (*DEFAULT_RELAY_RESOURCES, "widgets")
#: What the fake upstream serves (``hosts`` is served but not declared: unknown_name).
UPSTREAM = {"users", "groups", "widgets", "hosts"}
USERS = {1042: "Ada Lovelace", 1043: "Grace Hopper"}


def authorize(request: Any, action: str) -> bool:
    if action == "admin":
        return request.headers.get("x-role") == "admin"
    return request.headers.get("x-deny") != "yes"


def options() -> dict[str, Any]:
    """The telemetry routes' options, as every adapter takes them."""
    origins = os.environ.get("CONTRACT_ORIGINS")
    return {
        "authorize": None if os.environ.get("CONTRACT_HOOK") == "none" else authorize,
        "ui_actions": UI_ACTIONS,
        "origins": origins.split(",") if origins else None,
    }


def relay_answer(method: str, path: str) -> tuple[int, bytes]:
    """The fake upstream: 200 (201 for POST) for a resource it serves, 404 otherwise."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in UPSTREAM:
        return 404, b'{"error":"no such resource"}'
    return (201 if method == "POST" else 200), json.dumps({"segments": len(parts)}).encode()
