"""The contract API on Starlette (served by uvicorn in the tests)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from outbox.web import RelayTracking, RouteTracking, not_tracked, telemetry_routes, track_as
from tests.web.apps.common import RELAY_PREFIX, RELAY_RESOURCES, USERS, options, relay_answer


async def list_users(request: Request) -> Response:
    return JSONResponse(sorted(USERS))


async def create_user(request: Request) -> Response:
    return JSONResponse({"id": 1044}, 201)


@track_as("users.me.get")
async def me(request: Request) -> Response:
    return JSONResponse({"name": "Ada Lovelace"})


async def user_by_name(request: Request) -> Response:
    return JSONResponse({"found": request.path_params["username"] in USERS.values()})


async def user(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    if request.method == "DELETE":
        return Response(status_code=204)
    if request.method == "PUT":
        return JSONResponse({"id": user_id})
    if user_id not in USERS:
        return JSONResponse({"detail": "Not Found"}, 404)
    return JSONResponse({"name": USERS[user_id]})


async def user_groups(request: Request) -> Response:
    return JSONResponse(["engineering"])


async def deploy(request: Request) -> Response:
    return JSONResponse({"status": "queued"}, 202)


async def old_users(request: Request) -> Response:
    return RedirectResponse("/api/users", 302)


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug in the app")


@not_tracked
async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@not_tracked
async def relay(request: Request) -> Response:
    status, body = relay_answer(request.method, request.path_params["path"])
    return Response(body, status, media_type="application/json")


def create_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/api/users", list_users, methods=["GET"]),
            Route("/api/users", create_user, methods=["POST"]),
            Route("/api/users/me", me),
            Route("/api/users/by-name/{username}", user_by_name),
            Route("/api/users/{user_id:int}", user, methods=["GET", "PUT", "DELETE"]),
            Route("/api/users/{user_id:int}/groups", user_groups),
            Route("/api/v1/projects/{project}/deploy", deploy, methods=["POST"]),
            Route("/api/old-users", old_users),
            Route("/api/broken", broken),
            Route("/healthz", health),
            Route(
                RELAY_PREFIX + "/{path:path}",
                relay,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            ),
            *telemetry_routes(**options()),
        ]
    )
    app.add_middleware(RouteTracking)
    app.add_middleware(RelayTracking, prefix=RELAY_PREFIX, resources=RELAY_RESOURCES)
    return app
