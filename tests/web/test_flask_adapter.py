"""What only the Flask adapter has to get right (the rest is the contract suite's)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Blueprint, Flask

from outbox import Telemetry
from outbox.web import same_origin
from outbox.web.flask import TelemetryExtension, init_app
from tests.web.conftest import stored


def get(app: Flask, path: str) -> int:
    response = app.test_client().get(path)
    response.close()  # what a WSGI server does after the last byte: the count happens here
    return response.status_code


def test_static_files_are_not_counted_and_the_api_is(
    on: Telemetry, db_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.js").write_text("export {};")
    app = Flask(__name__, static_folder=tmp_path / "static")
    files = Blueprint("files", __name__, static_folder=tmp_path / "static", url_prefix="/files")
    app.register_blueprint(files)

    @app.get("/api/users")
    def users() -> list[int]:
        return [1]

    init_app(app, telemetry=on)
    assert [get(app, p) for p in ("/static/app.js", "/files/static/app.js", "/api/users")] == [
        200,
        200,
        200,
    ]
    deadline = time.monotonic() + 5
    while stored(db_path) != {("api", "users.list"): 1} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored(db_path) == {("api", "users.list"): 1}


def test_under_a_url_prefix_the_page_points_at_the_prefixed_routes(on: Telemetry) -> None:
    app = Flask(__name__)
    TelemetryExtension(telemetry=on, url_prefix="/helios").init_app(app)
    page = app.test_client().get("/helios/settings/privacy")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'src="/helios/telemetry/static/privacy.js"' in html
    assert 'data-helios-telemetry-settings="/helios/api/settings/telemetry"' in html
    assert get(app, "/settings/privacy") == 404


def test_hooks_that_cannot_work_are_refused_when_wiring(on: Telemetry) -> None:
    async def authorize(request: object, action: str) -> bool:
        return True

    with pytest.raises(ValueError, match="pass a plain function"):
        init_app(Flask(__name__), telemetry=on, authorize=authorize)
    with pytest.raises(ValueError, match="would let anyone on the site switch sharing"):
        init_app(Flask(__name__), telemetry=on, authorize=same_origin)
    app = Flask(__name__)
    init_app(app, telemetry=on)
    with pytest.raises(RuntimeError, match="already set up"):
        init_app(app, telemetry=on)
