"""A small routed Helios-like API on FastAPI, counted by ``RouteTracking``.

Every request is named after the route template it matched, never after its
path: ``GET /api/users/by-name/jdoe`` counts ``users.by_name.get``,
``GET /api/v1/projects/apollo/builds/17`` counts ``projects.builds.get``. The
telemetry routes are included like any router; ``authorize`` grants ``admin`` to a
request carrying the administrator's token (a stand-in for the app's own sign-in).

Run it (from the repository root)::

    pip install 'helios-telemetry[web]' fastapi uvicorn
    HELIOS_TELEMETRY_DB=/tmp/helios-fastapi.db uvicorn --factory examples.fastapi_app:create_app

or with several worker processes (each counts into the same outbox)::

    uvicorn --factory examples.fastapi_app:create_app --workers 4
    gunicorn -k uvicorn_worker.UvicornWorker -w 4 'examples.fastapi_app:create_app()'
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable

from fastapi import APIRouter, FastAPI, HTTPException, Request

import outbox
from outbox import Telemetry
from outbox.web import RouteTracking, not_tracked, telemetry_routes, track_as

#: The UI actions the frontend reports.
UI_ACTIONS = ("bulk_edit", "export_csv", "column_sort")
#: Who may switch sharing: the bearer of this token (set HELIOS_EXAMPLE_ADMIN_TOKEN).
DEFAULT_ADMIN_TOKEN = "admin-token"

USERS = {1042: "Ada Lovelace", 1043: "Grace Hopper"}


def make_authorize(admin_token: str) -> Callable[[Request, str], bool]:
    """Anyone may read and send UI-action counts; ``admin`` needs the administrator's token."""

    def authorize(request: Request, action: str) -> bool:
        if action != "admin":
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), admin_token.encode())

    return authorize


def api_router() -> APIRouter:
    """The app's API, as nested routers (``/api/users/...``, ``/api/groups/...``)."""
    users = APIRouter(prefix="/users")

    @users.get("/")
    def list_users() -> list[int]:
        return sorted(USERS)

    @users.post("/", status_code=201)
    def create_user() -> dict[str, int]:
        return {"id": 1044}

    @users.get("/me")
    @track_as("users.me.get")
    def me() -> dict[str, str]:
        return {"name": "Ada Lovelace"}

    @users.get("/by-name/{username}")
    def user_by_name(username: str) -> dict[str, bool]:
        return {"found": username in USERS.values()}

    @users.get("/{user_id}")
    def get_user(user_id: int) -> dict[str, str]:
        if user_id not in USERS:
            raise HTTPException(404, "no such user")
        return {"name": USERS[user_id]}

    @users.get("/{user_id}/groups")
    def user_groups(user_id: int) -> list[str]:
        return ["engineering"]

    @users.delete("/{user_id}", status_code=204)
    def delete_user(user_id: int) -> None:
        return None

    groups = APIRouter(prefix="/groups")

    @groups.get("/")
    def list_groups() -> list[str]:
        return ["engineering", "operations"]

    @groups.get("/{group}/members")
    def group_members(group: str) -> list[int]:
        return sorted(USERS)

    @groups.get("/{group}/members/{member}")
    def group_member(group: str, member: str) -> dict[str, bool]:
        return {"member": True}

    hosts = APIRouter(prefix="/hosts")

    @hosts.get("/{hostname}")
    def get_host(hostname: str) -> dict[str, str]:
        return {"status": "up"}

    files = APIRouter(prefix="/files")

    @files.get("/{path:path}")
    def get_file(path: str) -> dict[str, int]:
        return {"bytes": 0}

    api = APIRouter(prefix="/api")
    for router in (users, groups, hosts, files):
        api.include_router(router)
    return api


def projects_router() -> APIRouter:
    """A versioned API included with a prefix: ``/api/v1/projects/...``."""
    projects = APIRouter(prefix="/projects")

    @projects.get("/{project}/builds/{build_id}")
    def get_build(project: str, build_id: int) -> dict[str, str]:
        return {"status": "passed"}

    @projects.post("/{project}/deploy", status_code=202)
    def deploy(project: str) -> dict[str, str]:
        return {"status": "queued"}

    return projects


def create_app(
    telemetry: Telemetry | None = None,
    *,
    origins: Iterable[str] | None = None,
    admin_token: str | None = None,
) -> FastAPI:
    """The app around ``telemetry`` (default: the ``outbox.telemetry`` singleton)."""
    t = outbox.telemetry if telemetry is None else telemetry
    token = admin_token or os.environ.get("HELIOS_EXAMPLE_ADMIN_TOKEN", DEFAULT_ADMIN_TOKEN)
    app = FastAPI(title="Helios (example)")
    app.include_router(api_router())
    app.include_router(projects_router(), prefix="/api/v1")

    @app.get("/healthz")
    @not_tracked
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(
        telemetry_routes(
            telemetry=t,
            authorize=make_authorize(token),
            ui_actions=UI_ACTIONS,
            origins=origins,
        )
    )
    app.add_middleware(RouteTracking, telemetry=t)
    return app
