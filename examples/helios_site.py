"""What the Flask and Django examples share, with no web framework: the demo's accounts,
its fake directory (the relay's upstream), its commands and its pages.

(``examples/host_app.py``, the Starlette example, keeps its own copy: it predates these.)
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from outbox import Telemetry
from outbox.web import DEFAULT_RELAY_RESOURCES, Links, tracked_command

#: The UI actions the frontend reports; anything else is dropped as unknown_name.
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


def make_commands(telemetry: Telemetry) -> dict[str, Any]:
    """The app's commands, each counted once per run (also when it fails)."""

    @tracked_command("sync", telemetry=telemetry)
    def sync() -> dict[str, Any]:
        return {"command": "sync", "synced": len(USERS)}  # a real sync talks to the directory

    @tracked_command("users.export", telemetry=telemetry)
    def export_users() -> dict[str, Any]:
        return {"command": "users.export", "rows": len(USERS)}

    return {"sync": sync, "users.export": export_users}


#: What the fake upstream serves: the declared resources, and ``hosts``, which the
#: vocabulary does not declare (its requests are counted as dropped ``unknown_name``).
UPSTREAM = {r.split(".")[0] for r in RELAY_RESOURCES} | {"hosts"}


def relay(path: str) -> tuple[int, dict[str, Any]]:
    """A stand-in for Helios's relay to the directory API: (status, JSON)."""
    parts = [p for p in path.split("/") if p]
    if parts == ["users"]:
        return 200, {"users": USERS}
    if parts[:1] == ["users"] and len(parts) == 2:
        user = next((u for u in USERS if str(u["id"]) == parts[1]), None)
        return (200, user) if user else (404, {"error": "no such user"})
    if parts == ["groups"]:
        return 200, {"groups": GROUPS}
    if parts and parts[0].lower() in UPSTREAM:
        return 200, {"resource": "fake", "segments": len(parts)}
    return 404, {"error": "no such resource"}


def header_html(account: Account | None, hidden: str = "") -> str:
    if account is None:
        who = '<a id="sign-in" href="/signin">Sign in</a>'
    else:
        role = "administrator" if account.admin else "user"
        who = (
            f'<span id="signed-in">Signed in as {escape(account.name)} ({role})</span> '
            f'<form method="post" action="/signout" class="inline">{hidden}'
            '<button id="sign-out" type="submit">Sign out</button></form>'
        )
    return f"""  <header>
    <strong>Helios</strong>
    <helios-telemetry-badge id="badge"></helios-telemetry-badge>
    <a href="/settings/privacy">Privacy settings</a>
    {who}
  </header>"""


def dashboard_html(attributes: str, account: Account | None, hidden: str = "") -> str:
    """The dashboard: ``attributes`` for the ``<html>`` tag (``html_attributes``);
    ``hidden`` a form field the sign-out form needs (Django's CSRF token)."""
    rows = "\n".join(
        f"        <tr><td>{escape(str(u['name']))}</td><td>{escape(str(u['group']))}</td></tr>"
        for u in USERS
    )
    return f"""<!doctype html>
<html lang="en" {attributes}>
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Dashboard · Helios</title>
  <link rel="stylesheet" href="/telemetry/static/telemetry.css">
  <link rel="stylesheet" href="/example-static/dashboard.css">
  <script type="module" src="/example-static/dashboard.js"></script>
</head>
<body>
{header_html(account, hidden)}
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


def signin_html(error: str = "", hidden: str = "") -> str:
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
    <form method="post" action="/signin">{hidden}
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
