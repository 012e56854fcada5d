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
    HELIOS_TELEMETRY_DB=/tmp/helios-example.db python -m examples.host_app --port 8000

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
from examples import helios_site as site
from examples.helios_site import (
    ACCOUNTS,
    LINKS,
    RELAY_PREFIX,
    RELAY_RESOURCES,
    UI_ACTIONS,
    USERS,
    Account,
    dashboard_html,
    signin_html,
)
from outbox import Telemetry
from outbox.web import (
    Authorize,
    RelayTracking,
    html_attributes,
    same_origin,
    telemetry_routes,
    tracked_command,
)

HERE = Path(__file__).resolve().parent

# The accounts, the directory the relay stands in for, and the pages: shared with the
# Flask and Django examples (``examples/helios_site.py``).
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
async def relay(request: Request) -> Response:
    """A stand-in for Helios's relay to the directory API (``helios_site.relay``)."""
    status, answer = site.relay(request.path_params["path"])
    return JSONResponse(answer, status)


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
        flush = f' data-helios-telemetry-flush-ms="{flush_ms}"' if flush_ms else ""
        return HTMLResponse(dashboard_html(attrs + flush, sessions.account(request)))

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
