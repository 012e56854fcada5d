"""The contract API on FastAPI (served by uvicorn in the tests)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from outbox.web import RelayTracking, RouteTracking, not_tracked, telemetry_routes, track_as
from tests.web.apps.common import RELAY_PREFIX, RELAY_RESOURCES, USERS, options, relay_answer


def create_app() -> FastAPI:
    app = FastAPI()
    users = APIRouter(prefix="/users")

    @users.get("")
    def list_users() -> list[int]:
        return sorted(USERS)

    @users.post("", status_code=201)
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
            raise HTTPException(404)
        return {"name": USERS[user_id]}

    @users.put("/{user_id}")
    def update_user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @users.delete("/{user_id}", status_code=204)
    def delete_user(user_id: int) -> None:
        return None

    @users.get("/{user_id}/groups")
    def user_groups(user_id: int) -> list[str]:
        return ["engineering"]

    api = APIRouter(prefix="/api")
    api.include_router(users)

    @api.post("/v1/projects/{project}/deploy", status_code=202)
    def deploy(project: str) -> dict[str, str]:
        return {"status": "queued"}

    @api.get("/old-users")
    def old_users() -> RedirectResponse:
        return RedirectResponse("/api/users", 302)

    @api.get("/broken")
    def broken() -> None:
        raise RuntimeError("a bug in the app")

    @api.api_route("/relay/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @not_tracked
    def relay(path: str, request: Request) -> Response:
        status, body = relay_answer(request.method, path)
        return Response(body, status, media_type="application/json")

    app.include_router(api)

    @app.get("/healthz")
    @not_tracked
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(telemetry_routes(**options()))
    app.add_middleware(RouteTracking)
    app.add_middleware(RelayTracking, prefix=RELAY_PREFIX, resources=RELAY_RESOURCES)
    return app
