"""No silent zero: the count rule, the tallies, their flush to the outbox, the warnings and
the ``outbox status`` line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox import Telemetry, store
from outbox.cli import CliContext, cli
from outbox.web import RelayTracking, RouteTracking
from outbox.web.counting import Outcome, Tally, decide, relay_warning, route_warning
from tests.web.conftest import run_async, stored
from tests.web.test_relay_tracking import Recorder, call, http_scope

# -- the rule, pure ------------------------------------------------------------------------


def named() -> str:
    return "users.list"


@pytest.mark.parametrize(
    ("method", "status", "kwargs", "outcome"),
    [
        ("GET", 200, {"matched": True}, Outcome.COUNTED),
        ("DELETE", 204, {"matched": True}, Outcome.COUNTED),
        ("HEAD", 200, {"matched": True}, Outcome.METHOD),
        ("OPTIONS", 200, {"matched": True}, Outcome.METHOD),
        ("GET", 404, {"matched": False}, Outcome.UNMATCHED),
        ("GET", 307, {"matched": False}, Outcome.UNMATCHED),
        ("GET", 200, {"matched": False}, Outcome.NO_ROUTE),
        ("GET", 200, {"matched": True, "own": True}, Outcome.OWN_ROUTE),
        ("GET", 200, {"matched": True, "mark": False}, Outcome.OPTED_OUT),
        ("GET", 302, {"matched": True}, Outcome.STATUS),
        ("GET", 401, {"matched": True}, Outcome.STATUS),
        ("POST", 422, {"matched": True}, Outcome.STATUS),
        ("GET", 500, {"matched": True}, Outcome.STATUS),
        ("GET", 0, {"matched": True}, Outcome.STATUS),  # no response started
        ("GET", 199, {"matched": True}, Outcome.STATUS),
        ("GET", 300, {"matched": True}, Outcome.STATUS),
    ],
)
def test_the_count_rule(method: str, status: int, kwargs: dict[str, Any], outcome: Outcome) -> None:
    result = decide(method, status, name=named, **kwargs)
    assert result == (outcome, "users.list" if outcome is Outcome.COUNTED else None)


def test_a_route_s_own_name_wins_and_no_name_means_unnamed() -> None:
    assert decide("GET", 200, matched=True, mark="users.me.get", name=named) == (
        Outcome.COUNTED,
        "users.me.get",
    )
    assert decide("GET", 200, matched=True, name=lambda: None) == (Outcome.UNNAMED, None)


def test_warnings_need_enough_requests_and_no_sign_of_life() -> None:
    assert route_warning({"no_route": 99}, check_after=100) is None
    warning = route_warning({"no_route": 60, "unmatched": 40}, check_after=100)
    assert warning is not None and warning.startswith(
        "RouteTracking has seen 100 requests and not one matched route"
    )
    assert route_warning({"unmatched": 100}, check_after=100) is None  # a scan of 404s
    assert route_warning({"no_route": 99, "status": 1}, check_after=100) is None
    assert route_warning({"no_route": 99, "counted": 1}, check_after=100) is None
    assert relay_warning({"unmatched": 100}, prefix="/api/relay", check_after=100) == (
        "RelayTracking(prefix='/api/relay') has seen 100 requests and none under "
        "'/api/relay', so it counts nothing: set prefix= to the path the relay route is "
        "served at (as the browser requests it, below any root_path)"
    )
    assert relay_warning({"unmatched": 99, "counted": 1}, prefix="/r", check_after=100) is None
    vocabulary = relay_warning({"unknown_name": 100}, prefix="/r", check_after=100)
    assert vocabulary is not None and "none matched a declared resource" in vocabulary


def test_a_tally_hands_over_each_count_once() -> None:
    tally = Tally("src", lambda outcomes: None)
    for outcome in (Outcome.COUNTED, Outcome.COUNTED, Outcome.STATUS):
        tally.add(outcome)
    first = tally.take()
    assert first is not None and first.delta == {"counted": 2, "status": 1}
    assert tally.take() is None
    tally.add(Outcome.COUNTED)
    second = tally.take()
    assert second is not None and second.delta == {"counted": 1}
    tally.restore(second)  # the write failed: the next flush carries it
    tally.add(Outcome.METHOD)
    third = tally.take()
    assert third is not None and third.delta == {"counted": 1, "method": 1}


# -- the flush, and the status line -----------------------------------------------------------


def status(db_path: Path) -> tuple[dict[str, Any], str]:
    runner = CliRunner()
    env = {"HELIOS_TELEMETRY_ENABLED": "true"}
    js = runner.invoke(cli, ["--db", str(db_path), "status", "--json"], env=env, obj=CliContext())
    text = runner.invoke(cli, ["--db", str(db_path), "status"], env=env, obj=CliContext())
    assert js.exit_code == 0 and text.exit_code == 0, js.output + text.output
    return json.loads(js.stdout), " ".join(text.stdout.split())  # unwrapped


def lifespan_shutdown(app: ASGIApp) -> None:
    """Run the ASGI lifespan through startup and shutdown, as a server stopping does."""

    async def go() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            pass

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    run_async(go)


async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that serves the lifespan protocol (and answers 200 to any request)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await Recorder()(scope, receive, send)


def test_the_tally_is_written_at_most_every_flush_interval_and_at_shutdown(
    on: Telemetry, db_path: Path
) -> None:
    app = RelayTracking(lifespan_app, telemetry=on, flush_every=3600, writes="inline")
    for path in ["/api/relay/users"] * 3 + ["/api/relay/hosts/db01", "/elsewhere"]:
        call(app, http_scope("GET", path))
    call(app, http_scope("HEAD", "/api/relay/users"))
    with on.connect() as conn:
        assert store.web_tracking(conn) is None  # not per request: nothing yet
    lifespan_shutdown(app)
    with on.connect() as conn:
        view = store.web_tracking(conn)
    assert view is not None
    assert view["RelayTracking /api/relay"] == {
        "seen": 6,
        "counted": 3,
        "unknown_name": 1,
        "not_counted": {"method": 1, "unmatched": 1},
        "warning": None,
        "updated_at": view["RelayTracking /api/relay"]["updated_at"],
    }
    assert stored(db_path) == {("api", "users.list"): 3}


def test_processes_add_up_in_the_outbox(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    apps = [
        RelayTracking(Recorder(), telemetry=make_telemetry(), flush_every=0, writes="inline")
        for _ in range(3)
    ]
    for i, app in enumerate(apps):
        for _ in range(i + 1):
            call(app, http_scope("GET", "/api/relay/groups"))
    report, text = status(db_path)
    source = report["web_tracking"]["RelayTracking /api/relay"]
    assert (source["seen"], source["counted"]) == (6, 6)
    assert "web tracking RelayTracking /api/relay: 6 of 6 requests counted" in text


def test_a_relay_prefix_that_never_matches_warns_once_and_shows_in_status(
    on: Telemetry, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The app's relay lives under /relay; the middleware was told /api/relay.
    app = RelayTracking(Recorder(), prefix="/api/relay", telemetry=on, check_after=20)
    on.track_command("sync")  # the outbox exists, as in any app that counts something
    for _ in range(30):
        call(app, http_scope("GET", "/relay/users"))
    warnings = [r.getMessage() for r in caplog.records if r.name == "outbox.web"]
    expected = (
        "RelayTracking(prefix='/api/relay') has seen 20 requests and none under '/api/relay', "
        "so it counts nothing: set prefix= to the path the relay route is served at (as the "
        "browser requests it, below any root_path)"
    )
    assert warnings == [f"telemetry: {expected}"]
    report, text = status(db_path)
    assert report["web_tracking"]["RelayTracking /api/relay"]["warning"] == expected
    assert report["web_tracking"]["RelayTracking /api/relay"]["counted"] == 0
    line = "web tracking RelayTracking /api/relay: 0 of 20 requests counted (WARNING: "
    assert line + expected + ")" in text
    assert stored(db_path) == {("command", "sync"): 1}


class CopyScope:
    """A middleware that hands the app a copy of the scope (as some path rewriters do)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(dict(scope), receive, send)


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def test_route_tracking_outside_the_router_warns_once_and_shows_in_status(
    on: Telemetry, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inner = Starlette(routes=[Route("/api/users", ok)])
    app = RouteTracking(CopyScope(inner), telemetry=on, check_after=10)
    on.track_command("sync")
    for _ in range(15):
        assert call(app, http_scope("GET", "/api/users"))[0]["status"] == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "outbox.web"]
    assert len(messages) == 1 and messages[0].startswith(
        "telemetry: RouteTracking has seen 10 requests and not one matched route"
    )
    report, text = status(db_path)
    source = report["web_tracking"]["RouteTracking"]
    assert source["not_counted"] == {"no_route": 10} and source["counted"] == 0
    assert "web tracking RouteTracking: 0 of 10 requests counted (WARNING: RouteTracking" in text
    # placed right, the same app counts
    fixed = Starlette(routes=[Route("/api/users", ok)])
    fixed.add_middleware(RouteTracking, telemetry=on, writes="inline")
    call(fixed, http_scope("GET", "/api/users"))
    assert stored(db_path) == {("command", "sync"): 1, ("api", "users.list"): 1}


def test_nothing_is_written_while_off_or_before_there_is_an_outbox(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    off = make_telemetry(enabled=None)
    app = RelayTracking(lifespan_app, telemetry=off, flush_every=0)
    call(app, http_scope("GET", "/api/relay/users"))
    lifespan_shutdown(app)
    assert not db_path.exists()
    off.set_enabled(False)  # an outbox now exists, and the organisation said no
    call(app, http_scope("GET", "/api/relay/users"))
    lifespan_shutdown(app)
    with off.connect() as conn:
        assert store.web_tracking(conn) is None


def test_a_server_stopping_stores_what_the_writer_thread_still_holds(
    on: Telemetry, db_path: Path
) -> None:
    app = RelayTracking(lifespan_app, telemetry=on)  # writes="thread": stored 50 ms later
    for _ in range(7):
        call(app, http_scope("GET", "/api/relay/users"))
    lifespan_shutdown(app)
    assert stored(db_path) == {("api", "users.list"): 7}  # at once, not 50 ms later
