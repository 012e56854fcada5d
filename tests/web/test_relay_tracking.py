"""RelayTracking: names from the declared vocabulary only, counted after a 2xx, requests
untouched, failures contained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

import outbox
from outbox import Telemetry
from outbox.web import DEFAULT_RELAY_RESOURCES, RelayTracking
from tests.web.conftest import drops, run_async, stored


class Recorder:
    """An inner ASGI app that records what it was given and answers in several chunks."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
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
                "status": self.status,
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


def relay(telemetry: Telemetry, inner: Any = None, **kwargs: Any) -> RelayTracking:
    kwargs.setdefault("writes", "inline")  # the thread variant is tested on its own below
    return RelayTracking(inner or Recorder(), telemetry=telemetry, **kwargs)


def test_relayed_calls_are_counted_exactly_by_declared_words(on: Telemetry, db_path: Path) -> None:
    app = relay(on)
    requests = (
        [("GET", "/api/relay/users")] * 3
        + [("GET", "/api/relay/users/42"), ("GET", "/api/relay/users/jdoe")]
        + [("POST", "/api/relay/groups")]
        + [("PATCH", "/api/relay/users/alice@example.com")] * 2
        + [("DELETE", "/api/relay/groups/eng-team/members/a.lovelace")]
        + [("GET", "/api/relay/users?search=bob@example.com")]
        + [("GET", "/api/relay/groups/db01/members")]
        + [("GET", "/api/relay/v1.0/users/john_smith/memberOf")]
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
        ("api", "groups.members.list"): 1,
        ("api", "users.member_of.list"): 1,
    }
    assert drops(db_path) == {}


@pytest.mark.parametrize(
    "path",
    [
        "/api/relay/hosts/db01",  # no declared resource: "hosts" is not a word of ours
        "/api/relay/jdoe",
        "/api/relay/files/home/alice/Documents/tax_return",
        "/api/relay/tokens/ghp_abcdefghijklmnopqrstuvwxyz",
        "/api/relay/%75sers",  # percent-decoded by the server before us: never our business
        "/api/relay/\uff55sers",  # fullwidth u
        "/api/relay",
        "/api/relay/",
        "/api/relay/42",
    ],
)
def test_a_relayed_call_that_matches_nothing_declared_is_an_unknown_name(
    on: Telemetry, db_path: Path, path: str
) -> None:
    call(relay(on), http_scope("GET", path))
    assert stored(db_path) == {}
    assert drops(db_path) == {"unknown_name": 1}


def test_lookalikes_of_declared_words_are_not_those_words(on: Telemetry, db_path: Path) -> None:
    app = relay(on, resources=["keys", "users"])
    # KELVIN SIGN lowercases to "k", fullwidth letters fold to ASCII under NFKC: neither
    # is the declared word, so neither names anything
    for path in ("/api/relay/\u212aeys", "/api/relay/\uff55sers", "/api/relay/keys"):
        call(app, http_scope("GET", path))
    assert stored(db_path) == {("api", "keys.list"): 1}
    assert drops(db_path) == {"unknown_name": 2}


def test_the_host_extends_the_vocabulary(on: Telemetry, db_path: Path) -> None:
    app = relay(on, resources=[*DEFAULT_RELAY_RESOURCES, "widgets", "widgets.parts"])
    for path in ("/api/relay/widgets", "/api/relay/widgets/w-1/parts/p-2", "/api/relay/gizmos"):
        call(app, http_scope("GET", path))
    assert stored(db_path) == {("api", "widgets.list"): 1, ("api", "widgets.parts.get"): 1}
    assert drops(db_path) == {"unknown_name": 1}


def test_templates_are_tried_first(on: Telemetry, db_path: Path) -> None:
    app = relay(
        on,
        resources=["users"],
        templates={
            "GET /users/{id}/photo": "users.photo.get",
            "PUT /files/{path:path}": "files.upload",
        },
    )
    for method, path in [
        ("GET", "/api/relay/users/jdoe/photo"),
        ("PUT", "/api/relay/files/home/alice/tax.pdf"),
        ("PUT", "/api/relay/files"),  # {path:path} needs one segment at least
        ("GET", "/api/relay/users/jdoe/photo/large"),  # not the template: the vocabulary
    ]:
        call(app, http_scope(method, path))
    assert stored(db_path) == {
        ("api", "users.photo.get"): 1,
        ("api", "files.upload"): 1,
        ("api", "users.get"): 1,
    }
    assert drops(db_path) == {"unknown_name": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resources": ["Users"]}, "relay resource 'Users' breaks the naming rules"),
        ({"resources": ["users", "a@b.example"]}, "relay resource 'a@b.example'"),
        ({"resources": "users"}, "takes a list"),
        ({"resources": [], "templates": None}, "needs resources="),
        ({"templates": {"/users/{id}": "users.get"}}, "write 'METHOD /path/{param}'"),
        ({"templates": {"GET /users/{id}": "Users Get"}}, "'Users Get' breaks the naming rules"),
        ({"templates": {"GET /us~ers/{id}": "users.get"}}, "'us~ers' is not a word"),
        ({"prefix": "api/relay"}, "must start with '/'"),
    ],
)
def test_bad_declarations_fail_when_the_app_is_built(
    on: Telemetry, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{")):
        relay(on, **kwargs)


@pytest.mark.parametrize(
    ("status", "method", "counted"),
    [
        (200, "GET", True),
        (201, "POST", True),
        (204, "DELETE", True),
        (301, "GET", False),
        (304, "GET", False),
        (401, "GET", False),
        (404, "GET", False),
        (422, "POST", False),
        (500, "GET", False),
        (502, "GET", False),
        (200, "HEAD", False),
        (200, "OPTIONS", False),
        (200, "TRACE", False),
    ],
)
def test_only_2xx_answers_to_counted_methods_are_counted(
    on: Telemetry, db_path: Path, status: int, method: str, counted: bool
) -> None:
    call(relay(on, Recorder(status)), http_scope(method, "/api/relay/users"))
    verb = {"GET": "list", "POST": "create", "DELETE": "delete"}.get(method)
    assert stored(db_path) == ({("api", f"users.{verb}"): 1} if counted else {})
    assert drops(db_path) == {}


def test_an_unknown_path_answered_404_is_not_even_a_drop(on: Telemetry, db_path: Path) -> None:
    call(relay(on, Recorder(404)), http_scope("GET", "/api/relay/.git/config"))
    assert stored(db_path) == {} and drops(db_path) == {}


@pytest.mark.parametrize(
    "path",
    ["/", "/api/users", "/api/relayed/users", "/api/rela", "/settings/privacy", "/API/RELAY/users"],
)
def test_paths_outside_the_prefix_are_not_tracked(on: Telemetry, db_path: Path, path: str) -> None:
    inner = Recorder()
    call(relay(on, inner), http_scope("GET", path))
    assert len(inner.scopes) == 1
    assert stored(db_path) == {} and drops(db_path) == {}


def test_a_trailing_slash_on_the_prefix_is_ignored(on: Telemetry, db_path: Path) -> None:
    call(relay(on, prefix="/relay/"), http_scope("GET", "/relay/groups"))
    assert stored(db_path) == {("api", "groups.list"): 1}


def test_the_path_is_read_below_the_root_path(on: Telemetry, db_path: Path) -> None:
    app = relay(on)
    call(app, http_scope("GET", "/helios/api/relay/groups/7", root_path="/helios"))
    call(app, http_scope("GET", "/helios/other", root_path="/helios"))
    assert stored(db_path) == {("api", "groups.get"): 1}


@pytest.mark.parametrize("writes", ["inline", "thread"])
def test_the_request_and_response_are_passed_on_untouched(
    on: Telemetry, db_path: Path, writes: str
) -> None:
    chunks = (b'{"name": ', b'"Ada"}')
    plain, tracked = Recorder(201), Recorder(201)
    scope = http_scope("POST", "/api/relay/users")
    without = call(plain, dict(scope), chunks)
    app = relay(on, tracked, writes=writes)
    with_middleware = call(app, scope, chunks)
    assert app.drain()
    assert with_middleware == without  # status, headers and every body chunk, in order
    assert without[0]["status"] == 201 and len(without) == 3
    assert tracked.scopes[0] is scope  # the very same scope object, unmodified
    assert tracked.scopes[0] == http_scope("POST", "/api/relay/users")
    assert tracked.bodies == plain.bodies == [b'{"name": "Ada"}']
    assert stored(db_path) == {("api", "users.create"): 1}


def test_websocket_and_lifespan_scopes_pass_through(on: Telemetry, db_path: Path) -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    app = relay(on, inner)

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
    app = relay(off, flush_every=0)
    for _ in range(3):
        assert call(app, http_scope("GET", "/api/relay/users"))[0]["status"] == 200
    assert not db_path.exists()


def test_locked_off_writes_nothing_even_with_an_organisation_on(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    make_telemetry(enabled=None).set_enabled(True)
    locked = make_telemetry(enabled=None, environ={"DO_NOT_TRACK": "1"})
    call(relay(locked, flush_every=0), http_scope("GET", "/api/relay/users"))
    assert stored(db_path) == {} and drops(db_path) == {}


def test_a_corrupt_outbox_never_reaches_the_request(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    broken = make_telemetry(enabled=True)
    inner = Recorder()
    app = relay(broken, inner, flush_every=0)
    for _ in range(5):
        messages = call(app, http_scope("GET", "/api/relay/users"), (b"x",))
        assert messages[0]["status"] == 200 and messages[-1]["body"] == b"part2"
    assert inner.bodies == [b"x"] * 5
    assert broken.unstored == {"storage_error": 5}
    assert db_path.read_bytes() == b"this is not a database" * 100


def test_an_outbox_in_an_unwritable_place_never_reaches_the_request(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    broken = make_telemetry(enabled=True, db_path=blocker / "telemetry.db")
    messages = call(relay(broken, flush_every=0), http_scope("GET", "/api/relay/users"))
    assert messages[0]["status"] == 200
    assert broken.unstored == {"storage_error": 1}


class Exploding(Telemetry):
    """A Telemetry whose track calls raise, which a real one never does."""

    def track_api_call(self, name: str, count: int = 1) -> bool:
        raise RuntimeError("boom")

    def count_dropped(self, reason: str, n: int = 1) -> None:  # type: ignore[override]
        raise RuntimeError("boom")


@pytest.mark.parametrize("writes", ["inline", "thread"])
def test_even_a_raising_telemetry_never_reaches_the_request(
    db_path: Path, caplog: pytest.LogCaptureFixture, writes: str
) -> None:
    app = relay(Exploding(db_path=db_path, environ={}), writes=writes)
    for path in ("/api/relay/users", "/api/relay/42", "/api/relay/users"):
        assert call(app, http_scope("GET", path))[0]["status"] == 200
        assert app.drain()
    said = "failed (request unaffected)" if writes == "inline" else "could not store counts"
    warnings = [r for r in caplog.records if f"RelayTracking /api/relay {said}" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once per request


def test_an_app_that_raises_is_not_counted_and_its_error_is_unchanged(
    on: Telemetry, db_path: Path
) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("upstream gone")

    app = relay(on, failing)
    with pytest.raises(LookupError, match="upstream gone"):
        call(app, http_scope("GET", "/api/relay/users"))
    assert stored(db_path) == {} and drops(db_path) == {}
    assert dict(app.tally.total) == {"error": 1}


def test_the_default_is_the_process_wide_singleton() -> None:
    assert RelayTracking(Recorder()).telemetry is outbox.telemetry


def test_the_default_vocabulary_covers_the_directory_apis() -> None:
    words = {r.split(".")[0] for r in DEFAULT_RELAY_RESOURCES}
    for word in ("users", "groups", "members", "roles", "devices", "orgunits", "licenses"):
        assert word in words
    assert {"audit", "domains", "aliases", "groups.members"} <= set(DEFAULT_RELAY_RESOURCES)
