"""The fixed names of DESIGN.md section 5 work exactly as written there."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from outbox import Telemetry
from outbox.web import (
    DEFAULT_RELAY_RESOURCES,
    RelayTracking,
    RouteTracking,
    not_tracked,
    telemetry_routes,
)
from tests.web.conftest import ORIGIN, Client, drops, stored


def test_the_design_s_wiring(on: Telemetry, db_path: Path) -> None:
    t = on

    def authorize(request: Request, action: str) -> bool:
        return action != "admin" or request.headers.get("x-admin") == "yes"

    async def user(request: Request) -> Response:
        return PlainTextResponse("user")

    @not_tracked
    async def relay(request: Request) -> Response:
        return PlainTextResponse("relayed")

    app = Starlette(
        routes=[
            Route("/api/users/{user_id}", user),
            Route("/api/relay/{path:path}", relay),
            *telemetry_routes(telemetry=t, authorize=authorize, ui_actions=["bulk_edit"]),
        ]
    )
    app.add_middleware(RouteTracking, telemetry=t)
    app.add_middleware(
        RelayTracking,
        prefix="/api/relay",
        resources=[*DEFAULT_RELAY_RESOURCES, "widgets"],
        telemetry=t,
    )
    c = Client(app)
    for path in ("/api/users/jdoe", "/api/relay/widgets/w-1", "/api/relay/hosts/db01"):
        assert c.get(path).status_code == 200
    ui = c.post("/api/telemetry/ui-actions", json={"actions": {"bulk_edit": 2}}, headers=ORIGINS)
    assert ui.status_code == 202
    assert c.put(URL, json={"enabled": True}, headers=ORIGINS).status_code == 403
    admin = {**ORIGINS, "Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}
    assert (
        c.put(URL, json={"enabled": True}, headers={**admin, "X-Admin": "yes"}).status_code == 200
    )
    # The writer threads store what gathered 50 ms after the responses.
    want = {("api", "users.get"): 1, ("api", "widgets.get"): 1, ("ui", "bulk_edit"): 2}
    deadline = time.monotonic() + 5
    while stored(db_path) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored(db_path) == want
    assert drops(db_path) == {"unknown_name": 1}


URL = "/api/settings/telemetry"
ORIGINS = {"Origin": ORIGIN}
