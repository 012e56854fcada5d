"""A small Helios-like host app wired with the telemetry web integration.

It shows every piece a real Helios backend needs:

* ``RelayTracking`` counts the relayed API calls under ``/api/relay`` (a fake relay
  here, answering canned JSON), named from the declared directory vocabulary;
* two commands decorated with ``@tracked_command``, run by ``POST /api/commands/...``;
* ``telemetry_routes()``: the UI-action endpoint, the settings API, the privacy
  page, the help text and ``telemetry.js``, behind an ``authorize`` hook that grants
  ``admin`` to administrators only;
* users: an administrator and a normal user, who sign in with a tiny form and a
  signed session cookie (``admin`` / ``admin-password`` and ``user`` /
  ``user-password``; a demo, not a password store);
* a dashboard whose buttons call ``trackUIAction()``, with the "Contributing to
  Helios" badge.

Run it (from the repository root)::

    pip install 'helios-telemetry[web]' uvicorn
    HELIOS_TELEMETRY_DB=/tmp/helios-example.db python examples/host_app.py --port 8000

then open http://127.0.0.1:8000/, sign in as ``admin`` and open
http://127.0.0.1:8000/settings/privacy.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import outbox
from outbox import Telemetry
from outbox.web import (
    DEFAULT_RELAY_RESOURCES,
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
#: The upstream's resources: the directory APIs, and this app's own "widgets".
RELAY_RESOURCES = (*DEFAULT_RELAY_RESOURCES, "widgets")
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


# -- who is signed in ---------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    admin: bool
    password: str


#: The demo's accounts. A real Helios looks its users and roles up in its database.
ACCOUNTS = {
    "admin": Account("admin", True, "admin-password"),
    "user": Account("user", False, "user-password"),
}
SESSION_COOKIE = "helios_session"


class Sessions:
    """A signed cookie naming the account (HMAC-SHA256 with a secret of this process)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def _sign(self, name: str) -> str:
        return hmac.new(self.secret, name.encode(), hashlib.sha256).hexdigest()

    def cookie(self, account: Account) -> str:
        return f"{account.name}.{self._sign(account.name)}"

    def account(self, request: Request) -> Account | None:
        name, _, signature = request.cookies.get(SESSION_COOKIE, "").partition(".")
        if name in ACCOUNTS and hmac.compare_digest(signature, self._sign(name)):
            return ACCOUNTS[name]
        return None


def make_authorize(sessions: Sessions) -> Authorize:
    """The hook the telemetry routes ask: anyone may read and send UI-action counts (the
    routes check the origin themselves); only a signed-in administrator gets ``admin``."""

    def authorize(request: Request, action: str) -> bool:
        if action != "admin":
            return True
        account = sessions.account(request)
        return account is not None and account.admin

    return authorize


# -- commands and the relay -----------------------------------------------------------------


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


#: What the fake upstream serves: the declared resources, and ``hosts``, which the
#: vocabulary does not declare (its requests are counted as dropped ``unknown_name``).
UPSTREAM = {r.split(".")[0] for r in RELAY_RESOURCES} | {"hosts"}


async def relay(request: Request) -> Response:
    """A stand-in for Helios's relay to the directory API: canned JSON for a few
    resources, a small answer for any other the upstream serves, 404 for the rest."""
    parts = [p for p in request.path_params["path"].split("/") if p]
    if parts == ["users"]:
        return JSONResponse({"users": USERS})
    if parts[:1] == ["users"] and len(parts) == 2:
        user = next((u for u in USERS if str(u["id"]) == parts[1]), None)
        return JSONResponse(user) if user else JSONResponse({"error": "no such user"}, 404)
    if parts == ["groups"]:
        return JSONResponse({"groups": GROUPS})
    if parts and parts[0].lower() in UPSTREAM:
        return JSONResponse({"resource": "fake", "segments": len(parts)})
    return JSONResponse({"error": "no such resource"}, 404)


# -- pages ------------------------------------------------------------------------------------


def header_html(account: Account | None) -> str:
    if account is None:
        who = '<a id="sign-in" href="/signin">Sign in</a>'
    else:
        role = "administrator" if account.admin else "user"
        who = (
            f'<span id="signed-in">Signed in as {escape(account.name)} ({role})</span> '
            '<form method="post" action="/signout" class="inline">'
            '<button id="sign-out" type="submit">Sign out</button></form>'
        )
    return f"""  <header>
    <strong>Helios</strong>
    <helios-telemetry-badge id="badge"></helios-telemetry-badge>
    <a href="/settings/privacy">Privacy settings</a>
    {who}
  </header>"""


def dashboard_html(mode_attributes: str, flush_ms: int | None, account: Account | None) -> str:
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
{header_html(account)}
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


def signin_html(error: str = "") -> str:
    problem = f'<p id="signin-error" role="alert">{escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sign in · Helios</title>
  <link rel="stylesheet" href="/example-static/dashboard.css">
</head>
<body>
  <main>
    <h1>Sign in</h1>
    {problem}
    <form method="post" action="/signin">
      <p><label>User name <input id="username" name="username" autocomplete="username"></label></p>
      <p><label>Password <input id="password" name="password" type="password"
            autocomplete="current-password"></label></p>
      <p><button id="sign-in-submit" type="submit">Sign in</button></p>
    </form>
    <p>Demo accounts: <code>admin</code> / <code>admin-password</code> (administrator),
       <code>user</code> / <code>user-password</code>.</p>
  </main>
</body>
</html>
"""


def create_app(
    telemetry: Telemetry | None = None,
    *,
    authorize: Authorize | None = None,
    origins: Iterable[str] | None = None,
    flush_ms: int | None = None,
    sessions: Sessions | None = None,
) -> Starlette:
    """Build the example app around ``telemetry`` (default: the ``outbox.telemetry`` singleton).

    :param authorize: the hook (default: administrators may switch, see :func:`make_authorize`).
    :param origins: the app's origins (``http://127.0.0.1:8000``); None: loopback only.
    :param flush_ms: how long ``telemetry.js`` waits before sending (default 5 s).
    """
    t = outbox.telemetry if telemetry is None else telemetry
    sessions = sessions or Sessions()
    commands = make_commands(t)

    async def dashboard(request: Request) -> Response:
        decision = await run_in_threadpool(t.decision)
        attrs = html_attributes(decision, LINKS)
        return HTMLResponse(dashboard_html(attrs, flush_ms, sessions.account(request)))

    async def run_command(request: Request) -> Response:
        if not same_origin(request, "command"):
            return JSONResponse({"error": "forbidden"}, 403)
        command = commands.get(request.path_params["name"])
        if command is None:
            return JSONResponse({"error": "no such command"}, 404)
        return JSONResponse(await command())

    async def signin_form(request: Request) -> Response:
        return HTMLResponse(signin_html())

    async def signin(request: Request) -> Response:
        if not same_origin(request, "signin"):
            return HTMLResponse(signin_html("Sign in from this site's own form."), 403)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        account = ACCOUNTS.get(name)
        if account is None or not hmac.compare_digest(password, account.password):
            return HTMLResponse(signin_html("Unknown user name or wrong password."), 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, sessions.cookie(account), httponly=True, samesite="lax")
        return response

    async def signout(request: Request) -> Response:
        response = RedirectResponse("/", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    app = Starlette(
        routes=[
            Route("/", dashboard),
            Route("/signin", signin_form, methods=["GET"]),
            Route("/signin", signin, methods=["POST"]),
            Route("/signout", signout, methods=["POST"]),
            Route(
                RELAY_PREFIX + "/{path:path}",
                relay,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            ),
            Route("/api/commands/{name}", run_command, methods=["POST"]),
            Mount("/example-static", StaticFiles(directory=HERE / "static"), name="example"),
            *telemetry_routes(
                telemetry=t,
                authorize=authorize or make_authorize(sessions),
                ui_actions=UI_ACTIONS,
                origins=origins,
                privacy_policy_url=LINKS.privacy_policy_url,
                insights_url=LINKS.insights_url,
            ),
        ]
    )
    app.add_middleware(RelayTracking, prefix=RELAY_PREFIX, resources=RELAY_RESOURCES, telemetry=t)
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--origin",
        action="append",
        help="an origin browsers use for this app (default http://HOST:PORT); repeatable",
    )
    args = parser.parse_args()
    origins = args.origin or [f"http://{args.host}:{args.port}"]
    uvicorn.run(create_app(origins=origins), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
