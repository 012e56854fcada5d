"""The Helios-like example app on Flask, wired with ``outbox.web.flask``.

* ``init_app(...)``: the telemetry routes (UI actions, settings, privacy page, help,
  ``telemetry.js``) behind an ``authorize`` hook that grants ``admin`` to administrators
  only; API calls counted by their rule's template; relayed calls under ``/api/relay``
  named from the declared directory vocabulary;
* a routed API (``GET /api/groups/<group>/members``) and two ``@tracked_command``\\ s run by
  ``POST /api/commands/<name>``;
* an administrator and a normal user who sign in (Flask's signed session;
  ``admin`` / ``admin-password`` and ``user`` / ``user-password``; a demo, not a
  password store) and a dashboard whose buttons call ``trackUIAction()``.

Run it (from the repository root)::

    pip install 'helios-telemetry[flask]' gunicorn
    HELIOS_TELEMETRY_DB=/tmp/helios-flask.db flask --app examples.flask_app run --port 8000
    HELIOS_TELEMETRY_DB=/tmp/helios-flask.db gunicorn -w 4 'examples.flask_app:create_app()'

then open http://127.0.0.1:8000/, sign in as ``admin`` and open /settings/privacy.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, Response, jsonify, redirect, request, session

import outbox
from examples.helios_site import (
    ACCOUNTS,
    LINKS,
    RELAY_PREFIX,
    RELAY_RESOURCES,
    UI_ACTIONS,
    USERS,
    Account,
    dashboard_html,
    make_commands,
    relay,
    signin_html,
)
from outbox import Telemetry
from outbox.web import html_attributes, not_tracked, same_origin
from outbox.web.flask import init_app

HERE = Path(__file__).resolve().parent


def signed_in() -> Account | None:
    return ACCOUNTS.get(session.get("account", ""))


def authorize(request: object, action: str) -> bool:
    """Anyone may read and send UI-action counts (the routes check the origin
    themselves); only a signed-in administrator gets ``admin``."""
    if action != "admin":
        return True
    account = signed_in()
    return account is not None and account.admin


def create_app(
    telemetry: Telemetry | None = None,
    *,
    origins: Iterable[str] | None = None,
    secret_key: str | None = None,
) -> Flask:
    """The app around ``telemetry`` (default: the ``outbox.telemetry`` singleton).

    :param origins: the app's origins (default ``HELIOS_EXAMPLE_ORIGINS``, comma-separated;
        none: sharing can be switched through a loopback address only).
    :param secret_key: signs the session (default ``HELIOS_EXAMPLE_SECRET``, else random:
        give every gunicorn worker the same one).
    """
    t = outbox.telemetry if telemetry is None else telemetry
    if origins is None and os.environ.get("HELIOS_EXAMPLE_ORIGINS"):
        origins = os.environ["HELIOS_EXAMPLE_ORIGINS"].split(",")
    app = Flask(__name__, static_folder=HERE / "static", static_url_path="/example-static")
    app.secret_key = secret_key or os.environ.get("HELIOS_EXAMPLE_SECRET") or secrets.token_hex()
    commands = make_commands(t)

    @app.get("/")
    @not_tracked  # pages are not API calls
    def dashboard() -> str:
        return dashboard_html(html_attributes(t.decision(), LINKS), signed_in())

    @app.get("/api/groups/<group>/members")
    def group_members(group: str) -> Response:  # counted as groups.members.list
        return jsonify([u["name"] for u in USERS if u["group"] == group])

    @app.post("/api/commands/<name>")
    @not_tracked  # the command counts itself
    def run_command(name: str) -> tuple[Response, int]:
        if not same_origin(request, "command"):
            return jsonify({"error": "forbidden"}), 403
        command = commands.get(name)
        if command is None:
            return jsonify({"error": "no such command"}), 404
        return jsonify(command()), 200

    @app.route(RELAY_PREFIX + "/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @not_tracked  # the relay's tracking counts what it relays
    def relay_view(path: str) -> tuple[Response, int]:
        status, doc = relay(path)
        return jsonify(doc), status

    @app.get("/signin")
    @not_tracked
    def signin_form() -> str:
        return signin_html()

    @app.post("/signin")
    @not_tracked
    def signin() -> Response | tuple[str, int]:
        if not same_origin(request, "signin"):
            return signin_html("Sign in from this site's own form."), 403
        account = ACCOUNTS.get(request.form.get("username", ""))
        password = request.form.get("password", "")
        if account is None or not hmac.compare_digest(password, account.password):
            return signin_html("Unknown user name or wrong password."), 401
        session["account"] = account.name
        return redirect("/", 303)  # type: ignore[return-value]

    @app.post("/signout")
    @not_tracked
    def signout() -> Response:
        session.clear()
        return redirect("/", 303)  # type: ignore[return-value]

    init_app(
        app,
        telemetry=t,
        authorize=authorize,
        ui_actions=UI_ACTIONS,
        origins=origins,
        privacy_policy_url=LINKS.privacy_policy_url,
        insights_url=LINKS.insights_url,
        relay_prefix=RELAY_PREFIX,
        relay_resources=RELAY_RESOURCES,
    )
    return app
