"""The contract API on Flask (served by gunicorn in the tests)."""

from __future__ import annotations

from flask import Flask, Response, abort, redirect

from outbox.web import not_tracked, track_as
from outbox.web.flask import init_app
from tests.web.apps.common import RELAY_PREFIX, RELAY_RESOURCES, USERS, options, relay_answer


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/api/users")
    def list_users() -> list[int]:
        return sorted(USERS)

    @app.post("/api/users")
    def create_user() -> tuple[dict[str, int], int]:
        return {"id": 1044}, 201

    @app.get("/api/users/me")
    @track_as("users.me.get")
    def me() -> dict[str, str]:
        return {"name": "Ada Lovelace"}

    @app.get("/api/users/by-name/<username>")
    def user_by_name(username: str) -> dict[str, bool]:
        return {"found": username in USERS.values()}

    @app.get("/api/users/<int:user_id>")
    def get_user(user_id: int) -> dict[str, str]:
        if user_id not in USERS:
            abort(404)
        return {"name": USERS[user_id]}

    @app.put("/api/users/<int:user_id>")
    def update_user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @app.delete("/api/users/<int:user_id>")
    def delete_user(user_id: int) -> tuple[str, int]:
        return "", 204

    @app.get("/api/users/<int:user_id>/groups")
    def user_groups(user_id: int) -> list[str]:
        return ["engineering"]

    @app.post("/api/v1/projects/<project>/deploy")
    def deploy(project: str) -> tuple[dict[str, str], int]:
        return {"status": "queued"}, 202

    @app.get("/api/old-users")
    def old_users() -> Response:
        return redirect("/api/users", 302)  # type: ignore[return-value]

    @app.get("/api/broken")
    def broken() -> None:
        raise RuntimeError("a bug in the app")

    @app.get("/healthz")
    @not_tracked
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.route(RELAY_PREFIX + "/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @not_tracked
    def relay(path: str) -> Response:
        from flask import request

        status, body = relay_answer(request.method, path)
        return Response(body, status, content_type="application/json")

    init_app(app, **options(), relay_prefix=RELAY_PREFIX, relay_resources=RELAY_RESOURCES)
    return app
