"""RelayTracking: exact counts, names derived right, requests untouched, failures contained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

import outbox
from outbox import Telemetry
from outbox.web import RelayTracking
from tests.web.conftest import drops, run_async, stored


class Recorder:
    """An inner ASGI app that records what it was given and answers in several chunks."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send(
            {
                "type": "http.response.start",
                "status": 418,
                "headers": [(b"content-type", b"text/plain"), (b"x-relay", b"yes")],
            }
        )
        await send({"type": "http.response.body", "body": b"part1-", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})


def http_scope(method: str, path: str, root_path: str = "") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"helios.example")],
    }


def call(app: Any, scope: Scope, chunks: tuple[bytes, ...] = (b"",)) -> list[Message]:
    """Run one request through ``app``; return every message it sent."""
    sent: list[Message] = []

    async def go() -> None:
        queue = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> Message:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)

    run_async(go)
    return sent


def test_relayed_calls_are_counted_exactly_by_derived_name(on: Telemetry, db_path: Path) -> None:
    app = RelayTracking(Recorder(), prefix="/api/relay", telemetry=on)
    requests = (
        [("GET", "/api/relay/users")] * 3
        + [("GET", "/api/relay/users/42"), ("HEAD", "/api/relay/users/1043")]
        + [("POST", "/api/relay/groups")]
        + [("PATCH", "/api/relay/users/alice@example.com")] * 2
        + [("DELETE", "/api/relay/groups/0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70/members/a@b.example")]
        + [("GET", "/api/relay/users?search=bob@example.com")]
    )
    for method, path in requests:
        path, _, query = path.partition("?")
        scope = http_scope(method, path)
        scope["query_string"] = query.encode()
        call(app, scope)
    assert stored(db_path) == {
        ("api", "users.list"): 4,
        ("api", "users.get"): 2,
        ("api", "groups.create"): 1,
        ("api", "users.update"): 2,
        ("api", "groups.members.delete"): 1,
    }


@pytest.mark.parametrize(
    "path",
    ["/", "/api/users", "/api/relayed/users", "/api/rela", "/settings/privacy", "/API/RELAY/users"],
)
def test_paths_outside_the_prefix_are_not_tracked(on: Telemetry, db_path: Path, path: str) -> None:
    inner = Recorder()
    call(RelayTracking(inner, telemetry=on), http_scope("GET", path))
    assert len(inner.scopes) == 1
    assert stored(db_path) == {} and drops(db_path) == {}


def test_a_relayed_call_without_a_resource_name_is_counted_as_a_drop(
    on: Telemetry, db_path: Path
) -> None:
    app = RelayTracking(Recorder(), telemetry=on)
    for path in ("/api/relay", "/api/relay/", "/api/relay/42", "/api/relay/file.json"):
        call(app, http_scope("GET", path))
    assert stored(db_path) == {}
    assert drops(db_path) == {"invalid_name": 4}


def test_a_trailing_slash_on_the_prefix_is_ignored(on: Telemetry, db_path: Path) -> None:
    call(
        RelayTracking(Recorder(), prefix="/relay/", telemetry=on),
        http_scope("GET", "/relay/groups"),
    )
    assert stored(db_path) == {("api", "groups.list"): 1}


def test_the_path_is_read_below_the_root_path(on: Telemetry, db_path: Path) -> None:
    app = RelayTracking(Recorder(), telemetry=on)
    call(app, http_scope("GET", "/helios/api/relay/groups/7", root_path="/helios"))
    call(app, http_scope("GET", "/helios/other", root_path="/helios"))
    assert stored(db_path) == {("api", "groups.get"): 1}


def test_the_request_and_response_are_passed_on_untouched(on: Telemetry, db_path: Path) -> None:
    chunks = (b'{"name": ', b'"Ada"}')
    plain, tracked = Recorder(), Recorder()
    scope = http_scope("POST", "/api/relay/users")
    without = call(plain, dict(scope), chunks)
    with_middleware = call(RelayTracking(tracked, telemetry=on), scope, chunks)
    assert with_middleware == without  # status, headers and every body chunk, in order
    assert without[0]["status"] == 418 and len(without) == 3
    assert tracked.scopes[0] is scope  # the very same scope object, unmodified
    assert tracked.scopes[0] == http_scope("POST", "/api/relay/users")
    assert tracked.bodies == plain.bodies == [b'{"name": "Ada"}']
    assert stored(db_path) == {("api", "users.create"): 1}


def test_websocket_and_lifespan_scopes_pass_through(on: Telemetry, db_path: Path) -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    app = RelayTracking(inner, telemetry=on)

    async def go() -> None:
        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            pass

        await app({"type": "websocket", "path": "/api/relay/users"}, receive, send)
        await app({"type": "lifespan"}, receive, send)

    run_async(go)
    assert seen == ["websocket", "lifespan"]
    assert stored(db_path) == {}


def test_disabled_telemetry_writes_nothing(off: Telemetry, db_path: Path) -> None:
    app = RelayTracking(Recorder(), telemetry=off)
    for _ in range(3):
        assert call(app, http_scope("GET", "/api/relay/users"))[0]["status"] == 418
    assert not db_path.exists()


def test_locked_off_writes_nothing_even_with_an_organisation_on(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    make_telemetry(enabled=None).set_enabled(True)
    locked = make_telemetry(enabled=None, environ={"DO_NOT_TRACK": "1"})
    call(RelayTracking(Recorder(), telemetry=locked), http_scope("GET", "/api/relay/users"))
    assert stored(db_path) == {}


def test_a_corrupt_outbox_never_reaches_the_request(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    broken = make_telemetry(enabled=True)
    inner = Recorder()
    app = RelayTracking(inner, telemetry=broken)
    for _ in range(5):
        messages = call(app, http_scope("GET", "/api/relay/users"), (b"x",))
        assert messages[0]["status"] == 418 and messages[-1]["body"] == b"part2"
    assert inner.bodies == [b"x"] * 5
    assert broken.unstored == {"storage_error": 5}
    assert db_path.read_bytes() == b"this is not a database" * 100


def test_an_outbox_in_an_unwritable_place_never_reaches_the_request(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    broken = make_telemetry(enabled=True, db_path=blocker / "telemetry.db")
    messages = call(
        RelayTracking(Recorder(), telemetry=broken), http_scope("GET", "/api/relay/users")
    )
    assert messages[0]["status"] == 418
    assert broken.unstored == {"storage_error": 1}


class Exploding(Telemetry):
    """A Telemetry whose track calls raise, which a real one never does."""

    def track_api_call(self, name: str, count: int = 1) -> bool:
        raise RuntimeError("boom")

    def count_dropped(self, reason: str, n: int = 1) -> None:
        raise RuntimeError("boom")


def test_even_a_raising_telemetry_never_reaches_the_request(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = RelayTracking(Recorder(), telemetry=Exploding(db_path=db_path, environ={}))
    for path in ("/api/relay/users", "/api/relay/42", "/api/relay/users"):
        assert call(app, http_scope("GET", path))[0]["status"] == 418
    warnings = [r for r in caplog.records if "relay tracking failed" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once per request


def test_the_default_is_the_process_wide_singleton() -> None:
    assert RelayTracking(Recorder()).telemetry is outbox.telemetry


def test_a_prefix_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        RelayTracking(Recorder(), prefix="api/relay")
