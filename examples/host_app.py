"""A small Helios-like host app wired with the telemetry web integration.

It shows every piece a real Helios backend needs:

* ``RelayTracking`` counts the relayed API calls under ``/api/relay`` (a fake relay
  here, answering canned JSON);
* two commands decorated with ``@tracked_command``, run by ``POST /api/commands/...``;
* ``telemetry_routes()``: the UI-action endpoint, the settings API, the privacy
  page, the help text and ``telemetry.js``;
* a dashboard whose buttons call ``trackUIAction()``, with the "Contributing to
  Helios" badge.

Run it (from the repository root)::

    pip install 'helios-telemetry[web]' uvicorn
    HELIOS_TELEMETRY_DB=/tmp/helios-example.db python examples/host_app.py --port 8000

then open http://127.0.0.1:8000/ and http://127.0.0.1:8000/settings/privacy.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import outbox
from outbox import Telemetry
from outbox.web import (
    Authorize,
    Links,
    RelayTracking,
    html_attributes,
    same_origin,
    telemetry_routes,
    tracked_command,
)

HERE = Path(__file__).resolve().parent

#: The UI actions this app's frontend reports; anything else is dropped as unknown_name.
UI_ACTIONS = ("bulk_edit", "export_csv", "column_sort")
RELAY_PREFIX = "/api/relay"
LINKS = Links(
    privacy_policy_url="https://helios.gridworx.io/privacy",
    insights_url="https://helios.gridworx.io/insights",
)

USERS = [
    {"id": 1042, "name": "Ada Lovelace", "group": "engineering"},
    {"id": 1043, "name": "Grace Hopper", "group": "operations"},
    {"id": 1044, "name": "Edsger Dijkstra", "group": "engineering"},
]
GROUPS = [{"id": 7, "name": "engineering"}, {"id": 8, "name": "operations"}]


def authorize(request: Request, action: str) -> bool:
    """Same-origin requests only; in a real app ``admin`` also checks the signed-in user.

    This example has no sign-in, so every same-origin visitor counts as an administrator.
    """
    if not same_origin(request, action):
        return False
    return action != "admin" or is_admin(request)


def is_admin(request: Request) -> bool:
    return True  # Helios: look the session's user up and check their role


def make_commands(telemetry: Telemetry) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The app's commands, each counted once per run (also when it fails)."""

    @tracked_command("sync", telemetry=telemetry)
    async def sync() -> dict[str, Any]:
        await asyncio.sleep(0)  # a real sync would talk to the directory here
        return {"command": "sync", "synced": len(USERS)}

    @tracked_command("users.export", telemetry=telemetry)
    def export_users() -> dict[str, Any]:
        return {"command": "users.export", "rows": len(USERS)}

    async def export_async() -> dict[str, Any]:
        return await run_in_threadpool(export_users)

    return {"sync": sync, "users.export": export_async}


async def relay(request: Request) -> Response:
    """A stand-in for Helios's relay to the directory API: canned JSON."""
    parts = [p for p in request.path_params["path"].split("/") if p]
    if parts[:1] == ["users"]:
        if len(parts) == 1:
            return JSONResponse({"users": USERS})
        user = next((u for u in USERS if str(u["id"]) == parts[1]), None)
        if user is not None:
            return JSONResponse(user)
    if parts == ["groups"]:
        return JSONResponse({"groups": GROUPS})
    return JSONResponse({"error": "no such resource"}, 404)


def dashboard_html(mode_attributes: str, flush_ms: int | None) -> str:
    flush = f' data-helios-telemetry-flush-ms="{flush_ms}"' if flush_ms else ""
    rows = "\n".join(
        f"        <tr><td>{escape(str(u['name']))}</td><td>{escape(str(u['group']))}</td></tr>"
        for u in USERS
    )
    return f"""<!doctype html>
<html lang="en" {mode_attributes}{flush}>
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Dashboard · Helios</title>
  <link rel="stylesheet" href="/telemetry/static/telemetry.css">
  <link rel="stylesheet" href="/example-static/dashboard.css">
  <script type="module" src="/example-static/dashboard.js"></script>
</head>
<body>
  <header>
    <strong>Helios</strong>
    <helios-telemetry-badge id="badge"></helios-telemetry-badge>
    <a href="/settings/privacy">Privacy settings</a>
  </header>
  <main>
    <h1>Users</h1>
    <p class="toolbar">
      <button id="bulk-edit" type="button">Bulk edit</button>
      <button id="export-csv" type="button">Export CSV</button>
      <button id="sync" type="button">Sync now</button>
    </p>
    <table>
      <thead>
        <tr>
          <th><button id="sort-name" class="sort" type="button">Name</button></th>
          <th><button id="sort-group" class="sort" type="button">Group</button></th>
        </tr>
      </thead>
      <tbody id="users">
{rows}
      </tbody>
    </table>
    <p id="message" role="status"></p>
  </main>
</body>
</html>
"""


def create_app(
    telemetry: Telemetry | None = None,
    *,
    authorize: Authorize = authorize,
    flush_ms: int | None = None,
) -> Starlette:
    """Build the example app around ``telemetry`` (default: the ``outbox.telemetry`` singleton).

    :param flush_ms: how long ``telemetry.js`` waits before sending (default 5 s).
    """
    t = outbox.telemetry if telemetry is None else telemetry
    commands = make_commands(t)

    async def dashboard(request: Request) -> Response:
        decision = await run_in_threadpool(t.decision)
        return HTMLResponse(dashboard_html(html_attributes(decision, LINKS), flush_ms))

    async def run_command(request: Request) -> Response:
        if not same_origin(request, "command"):
            return JSONResponse({"error": "forbidden"}, 403)
        command = commands.get(request.path_params["name"])
        if command is None:
            return JSONResponse({"error": "no such command"}, 404)
        return JSONResponse(await command())

    app = Starlette(
        routes=[
            Route("/", dashboard),
            Route(
                RELAY_PREFIX + "/{path:path}",
                relay,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            ),
            Route("/api/commands/{name}", run_command, methods=["POST"]),
            Mount("/example-static", StaticFiles(directory=HERE / "static"), name="example"),
            *telemetry_routes(
                telemetry=t,
                authorize=authorize,
                ui_actions=UI_ACTIONS,
                privacy_policy_url=LINKS.privacy_policy_url,
                insights_url=LINKS.insights_url,
            ),
        ]
    )
    app.add_middleware(RelayTracking, prefix=RELAY_PREFIX, telemetry=t)
    return app


#: For ``uvicorn examples.host_app:app``: configured from the environment.
app = create_app()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
