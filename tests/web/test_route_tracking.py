"""RouteTracking on real Starlette and FastAPI apps: the matched template names the request.

Nested routers, ``include_router`` prefixes, ``Mount`` (with parameters, nested),
``root_path``, converters and trailing slashes; what is not counted (404, 401, 422,
500, redirects, HEAD, OPTIONS, the telemetry's own routes, opted-out routes); a route
that names itself.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox import Telemetry
from outbox.web import RouteTracking, not_tracked, telemetry_routes, track_as
from outbox.web.asgi import route_template
from tests.web.conftest import ORIGIN, drops, run_async, stored


def everyone(request: Request, action: str) -> bool:
    return True


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def answer(request: Request) -> Response:
    return PlainTextResponse("answer", int(request.path_params["code"]))


async def fail(request: Request) -> Response:
    raise RuntimeError("the handler failed")


@track_as("users.me.get")
async def me(request: Request) -> Response:
    return PlainTextResponse("me")


@not_tracked
async def health(request: Request) -> Response:
    return PlainTextResponse("healthy")


async def static_app(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("a static file")(scope, receive, send)


def starlette_app(t: Telemetry) -> Starlette:
    teams = Router(routes=[Route("/", ok), Route("/projects/{project:int}", ok)])
    app = Starlette(
        routes=[
            Route("/api/users", ok, methods=["GET", "POST"]),
            Route("/api/users/me", me),
            Route("/api/users/{user_id:int}", ok, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route("/api/users/by-name/{username}", ok),
            Route("/api/files/{path:path}", ok),
            Route("/api/v2/groups/", ok),
            Route("/api/answer/{code:int}", answer, methods=["GET", "POST"]),
            Route("/api/fail", fail),
            Route("/healthz", health),
            Mount(
                "/api/orgs/{org}",
                routes=[
                    Route("/members/{member}", ok),
                    Mount("/teams/{team}", app=teams),
                ],
            ),
            Mount("/static", app=static_app),
            Mount("/helios", routes=[*telemetry_routes(telemetry=t, authorize=everyone)]),
        ]
    )
    app.add_middleware(RouteTracking, telemetry=t, writes="inline")
    return app


def fastapi_app(t: Telemetry) -> FastAPI:
    app = FastAPI()
    users = APIRouter(prefix="/users")

    @users.get("/{user_id}/groups")
    def user_groups(user_id: int) -> list[str]:
        return []

    @users.get("/by-name/{username}")
    def by_name(username: str) -> dict[str, str]:
        return {}

    @users.get("/")
    def list_users() -> list[str]:
        return []

    @users.post("/", status_code=201)
    def create_user() -> dict[str, str]:
        return {}

    @users.get("/{user_id}")
    def get_user(user_id: int) -> dict[str, int]:
        if user_id == 401:
            raise HTTPException(401, "sign in")
        return {"id": user_id}

    @users.delete("/{user_id}", status_code=204)
    def delete_user(user_id: int) -> None:
        return None

    api = APIRouter(prefix="/api")
    api.include_router(users)
    app.include_router(api)
    items = APIRouter()

    @items.get("/items/{item_id}")
    def get_item(item_id: str) -> dict[str, str]:
        return {}

    app.include_router(items, prefix="/api/v1")
    app.mount("/api/legacy/{org}", Starlette(routes=[Route("/reports/{report}", ok)]))
    app.include_router(telemetry_routes(telemetry=t, authorize=everyone), prefix="/helios")
    app.add_middleware(RouteTracking, telemetry=t, writes="inline")
    return app


def send(
    app: ASGIApp, requests: list[tuple[str, str]], root_path: str = "", **kwargs: Any
) -> list[int]:
    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app, root_path=root_path, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            return [
                (
                    await client.request(m, root_path + p, headers={"Origin": ORIGIN}, **kwargs)
                ).status_code
                for m, p in requests
            ]

    return run_async(go)


STARLETTE_CASES = [
    # (method, path, status, name or None)
    ("GET", "/api/users", 200, "users.list"),
    ("POST", "/api/users", 200, "users.create"),
    ("GET", "/api/users/42", 200, "users.get"),
    ("PUT", "/api/users/42", 200, "users.update"),
    ("PATCH", "/api/users/42", 200, "users.update"),
    ("DELETE", "/api/users/42", 200, "users.delete"),
    ("GET", "/api/users/jdoe", 404, None),  # {user_id:int} does not match a name
    ("GET", "/api/users/me", 200, "users.me.get"),  # the route named itself
    ("GET", "/api/users/by-name/jdoe", 200, "users.by_name.get"),
    ("GET", "/api/users/by-name/John_Smith", 200, "users.by_name.get"),
    ("GET", "/api/files/home/alice/Documents/tax_return", 200, "files.get"),
    ("GET", "/api/v2/groups/", 200, "groups.list"),
    ("GET", "/api/v2/groups", 307, None),  # the trailing-slash redirect is not counted
    ("GET", "/api/orgs/acme/members/a.lovelace", 200, "orgs.members.get"),
    ("GET", "/api/orgs/acme/teams/backend/", 200, "orgs.teams.get"),
    ("GET", "/api/orgs/acme/teams/backend/projects/7", 200, "orgs.teams.projects.get"),
    ("GET", "/api/answer/201", 201, "answer.get"),
    ("POST", "/api/answer/204", 204, "answer.create"),
    ("GET", "/api/answer/301", 301, None),
    ("GET", "/api/answer/401", 401, None),
    ("GET", "/api/answer/422", 422, None),
    ("GET", "/api/answer/500", 500, None),
    ("GET", "/api/fail", 500, None),
    ("HEAD", "/api/users", 200, None),
    ("OPTIONS", "/api/users", 405, None),
    ("DELETE", "/api/users", 405, None),
    ("GET", "/api/does-not-exist", 404, None),
    ("GET", "/v1/secrets/prod", 404, None),
    ("GET", "/healthz", 200, None),  # opted out
    ("GET", "/static/app.js", 200, None),  # a mounted plain ASGI app: no template
    ("GET", "/helios/api/settings/telemetry", 200, None),  # the telemetry's own routes
    ("GET", "/helios/settings/privacy", 200, None),
    ("PUT", "/helios/api/settings/telemetry", 403, None),
]


def expected(cases: list[tuple[str, str, int, str | None]]) -> dict[tuple[str, str], int]:
    return dict(Counter(("api", name) for _, _, _, name in cases if name is not None))


def test_starlette_routes_are_named_by_their_templates(on: Telemetry, db_path: Path) -> None:
    statuses = send(starlette_app(on), [(m, p) for m, p, _, _ in STARLETTE_CASES])
    assert statuses == [s for _, _, s, _ in STARLETTE_CASES]
    assert stored(db_path) == expected(STARLETTE_CASES)
    assert drops(db_path) == {}


def test_starlette_under_a_root_path(on: Telemetry, db_path: Path) -> None:
    cases = [c for c in STARLETTE_CASES if c[0] == "GET" and c[2] != 307]
    statuses = send(starlette_app(on), [(m, p) for m, p, _, _ in cases], root_path="/helios-app")
    assert statuses == [s for _, _, s, _ in cases]
    assert stored(db_path) == expected(cases)


def test_following_a_trailing_slash_redirect_counts_once(on: Telemetry, db_path: Path) -> None:
    assert send(starlette_app(on), [("GET", "/api/v2/groups")], follow_redirects=True) == [200]
    assert stored(db_path) == {("api", "groups.list"): 1}


FASTAPI_CASES = [
    ("GET", "/api/users/42/groups", 200, "users.groups.list"),
    ("GET", "/api/users/jdoe/groups", 422, None),  # validation error
    ("GET", "/api/users/by-name/jdoe", 200, "users.by_name.get"),
    ("GET", "/api/users/by-name/a.lovelace", 200, "users.by_name.get"),
    ("GET", "/api/users/", 200, "users.list"),
    ("GET", "/api/users", 307, None),
    ("POST", "/api/users/", 201, "users.create"),
    ("GET", "/api/users/7", 200, "users.get"),
    ("GET", "/api/users/401", 401, None),
    ("DELETE", "/api/users/7", 204, "users.delete"),
    ("GET", "/api/v1/items/web-prod-eu1", 200, "items.get"),  # include_router(prefix=)
    ("GET", "/api/legacy/acme/reports/q3", 200, "legacy.reports.get"),  # app.mount
    ("OPTIONS", "/api/users/", 405, None),
    ("HEAD", "/api/users/", 405, None),
    ("GET", "/api/nothing-here", 404, None),
    ("GET", "/helios/api/settings/telemetry", 200, None),
    ("GET", "/helios/telemetry/help", 200, None),
]


def test_fastapi_routes_are_named_by_their_templates(on: Telemetry, db_path: Path) -> None:
    statuses = send(fastapi_app(on), [(m, p) for m, p, _, _ in FASTAPI_CASES])
    assert statuses == [s for _, _, s, _ in FASTAPI_CASES]
    assert stored(db_path) == expected(FASTAPI_CASES)


def test_fastapi_under_a_root_path(on: Telemetry, db_path: Path) -> None:
    cases = [c for c in FASTAPI_CASES if c[2] != 307]
    statuses = send(fastapi_app(on), [(m, p) for m, p, _, _ in cases], root_path="/helios-app")
    assert statuses == [s for _, _, s, _ in cases]
    assert stored(db_path) == expected(cases)


def test_cors_preflights_are_not_counted(on: Telemetry, db_path: Path) -> None:
    app = Starlette(routes=[Route("/api/users", ok)])
    app.add_middleware(CORSMiddleware, allow_origins=["https://ui.example"], allow_methods=["*"])
    app.add_middleware(RouteTracking, telemetry=on, writes="inline")
    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "GET",
    }

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            first = await client.options("/api/users", headers=preflight)
            second = await client.get("/api/users", headers={"Origin": "https://ui.example"})
            return [first.status_code, second.status_code]

    assert run_async(go) == [200, 200]
    assert stored(db_path) == {("api", "users.list"): 1}


def test_the_tally_says_why_each_request_was_or_was_not_counted(on: Telemetry) -> None:
    tracking: list[RouteTracking] = []

    class Spy(RouteTracking):
        def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
            super().__init__(app, **kwargs)
            tracking.append(self)

    app = Starlette(
        routes=[
            Route("/api/users", ok),
            Route("/api/answer/{code:int}", answer),
            Route("/healthz", health),
            Route("/", ok),
            *telemetry_routes(telemetry=on, authorize=everyone),
        ]
    )
    app.add_middleware(Spy, telemetry=on, writes="inline")
    send(
        app,
        [
            ("GET", "/api/users"),
            ("GET", "/api/users"),
            ("HEAD", "/api/users"),
            ("GET", "/api/answer/404"),
            ("GET", "/nope"),
            ("GET", "/healthz"),
            ("GET", "/"),
            ("GET", "/api/settings/telemetry"),
        ],
    )
    assert dict(tracking[0].tally.total) == {
        "counted": 2,
        "method": 1,
        "status": 1,
        "unmatched": 1,
        "opted_out": 1,
        "unnamed": 1,
        "own_route": 1,
    }


def test_the_template_never_comes_from_the_path() -> None:
    route = Route("/users/{user_id}", ok)
    scope: dict[str, Any] = {"route": route, "root_path": "", "path": "/users/jdoe"}
    assert route_template(scope) == "/users/{user_id}"
    # a mount was passed but cannot be found again: no template, not the path
    lost: dict[str, Any] = {**scope, "root_path": "/orgs/acme", "router": Router(routes=[])}
    assert route_template(lost) is None


@pytest.mark.parametrize("wiring", ["fastapi_mount", "fastapi_include", "starlette_mount"])
def test_the_telemetry_routes_plug_in_every_way_and_are_never_counted(
    on: Telemetry, db_path: Path, wiring: str
) -> None:
    routes = telemetry_routes(
        telemetry=on, authorize=everyone, origins=[ORIGIN], ui_actions=["bulk_edit"]
    )
    app: ASGIApp
    if wiring == "fastapi_mount":
        app = FastAPI()
        app.mount("/helios", routes)
    elif wiring == "fastapi_include":
        app = FastAPI()
        app.include_router(routes, prefix="/helios")
    else:
        app = Starlette(routes=[Mount("/helios", app=routes)])
    app.add_middleware(RouteTracking, telemetry=on, writes="inline")

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            return [
                await client.get("/helios/settings/privacy"),
                await client.get("/helios/api/settings/telemetry"),
                await client.put(
                    "/helios/api/settings/telemetry",
                    json={"enabled": True},
                    headers={"Origin": ORIGIN},
                ),
                await client.post(
                    "/helios/api/telemetry/ui-actions",
                    json={"actions": {"bulk_edit": 1}},
                    headers={"Origin": ORIGIN},
                ),
            ]

    page, settings, put, post = run_async(go)
    assert [r.status_code for r in (page, settings, put, post)] == [200, 200, 200, 202], post.text
    assert 'src="/helios/telemetry/static/privacy.js"' in page.text
    assert 'data-helios-telemetry-settings="/helios/api/settings/telemetry"' in page.text
    assert post.json()["accepted"] == 1, post.json()
    assert stored(db_path) == {("ui", "bulk_edit"): 1}  # the UI action, never the routes


def test_a_route_object_can_carry_the_name_or_the_opt_out(on: Telemetry, db_path: Path) -> None:
    named, hidden = Route("/api/whoami", ok), Route("/api/internal/{x}", ok)
    named.helios_telemetry_name = "users.me.get"  # type: ignore[attr-defined]
    hidden.helios_telemetry_name = False  # type: ignore[attr-defined]
    app = Starlette(routes=[named, hidden])
    app.add_middleware(RouteTracking, telemetry=on, writes="inline")
    assert send(app, [("GET", "/api/whoami"), ("GET", "/api/internal/1")]) == [200, 200]
    assert stored(db_path) == {("api", "users.me.get"): 1}
