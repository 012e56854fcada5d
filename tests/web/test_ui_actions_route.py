"""POST /api/telemetry/ui-actions: every status code, hostile bodies, nothing stored on refusal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Scope

from outbox import Telemetry
from outbox.web import telemetry_routes
from tests.web.conftest import SAME_ORIGIN, Client, drops, run_async, serve, stored

URL = "/api/telemetry/ui-actions"
DECLARED = ("bulk_edit", "export_csv", "column_sort")


def client(telemetry: Telemetry, **kwargs: object) -> Client:
    kwargs.setdefault("ui_actions", DECLARED)
    return Client(Starlette(routes=telemetry_routes(telemetry=telemetry, **kwargs)))  # type: ignore[arg-type]


def post(c: Client, actions: object, **kwargs: object) -> httpx.Response:
    headers = {**SAME_ORIGIN, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return c.post(URL, json={"actions": actions}, headers=headers, **kwargs)


def test_declared_names_are_stored_with_exact_counts(on: Telemetry, db_path: Path) -> None:
    c = client(on)
    r = post(c, {"bulk_edit": 2, "export_csv": 1})
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 3,
        "dropped": 0,
        "dropped_by_reason": {"unknown_name": 0, "invalid_name": 0, "not_stored": 0},
    }
    assert post(c, {"bulk_edit": 5, "column_sort": 1000}).status_code == 202
    assert stored(db_path) == {
        ("ui", "bulk_edit"): 7,
        ("ui", "export_csv"): 1,
        ("ui", "column_sort"): 1000,
    }
    assert drops(db_path) == {}


def test_valid_but_undeclared_names_are_dropped_as_unknown(on: Telemetry, db_path: Path) -> None:
    r = post(client(on), {"bulk_edit": 2, "secret_admin_panel": 3, "table.zoom": 4})
    assert r.status_code == 202
    assert r.json()["accepted"] == 2 and r.json()["dropped"] == 7
    assert r.json()["dropped_by_reason"]["unknown_name"] == 7
    assert stored(db_path) == {("ui", "bulk_edit"): 2}
    assert drops(db_path) == {"unknown_name": 7}


def test_with_no_declared_names_everything_is_unknown(on: Telemetry, db_path: Path) -> None:
    r = post(client(on, ui_actions=()), {"bulk_edit": 2})
    assert r.status_code == 202 and r.json()["accepted"] == 0
    assert stored(db_path) == {} and drops(db_path) == {"unknown_name": 2}


def test_local_mode_stores_too(make_telemetry: Callable[..., Telemetry], db_path: Path) -> None:
    assert post(client(make_telemetry(enabled="local")), {"export_csv": 1}).status_code == 202
    assert stored(db_path) == {("ui", "export_csv"): 1}


def test_off_by_default_is_204_and_touches_nothing(off: Telemetry, db_path: Path) -> None:
    r = post(client(off), {"bulk_edit": 2})
    assert r.status_code == 204 and r.content == b""
    assert not db_path.exists()


def test_switched_off_by_the_organisation_is_204(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=True)
    t.set_enabled(False)
    assert post(client(t), {"bulk_edit": 2}).status_code == 204
    # even a hostile body: nothing is read while off
    r = client(t).post(URL, content=b"x" * 100_000, headers=SAME_ORIGIN)
    assert r.status_code == 204
    assert stored(db_path) == {} and drops(db_path) == {}
    # httpx hands the whole body over up front, so drive the ASGI app directly and
    # watch whether the route ever asks for the body
    status, received = call_without_body(client(t).app)
    assert status == 204
    assert received == 0, "the body was read while telemetry is off"
    assert stored(db_path) == {} and drops(db_path) == {}


def call_without_body(app: ASGIApp) -> tuple[int, int]:
    """POST a same-origin JSON request to ``app`` with a ``receive`` that counts its calls;
    return the response status and how often ``receive`` was awaited."""
    received = 0
    sent: list[Message] = []
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"origin", SAME_ORIGIN["Origin"].encode()),
            (b"sec-fetch-site", SAME_ORIGIN["Sec-Fetch-Site"].encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100000"),
        ],
    }

    async def go() -> None:
        async def receive() -> Message:
            nonlocal received
            received += 1
            return {"type": "http.request", "body": b"x" * 100_000, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)

    run_async(go)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1
    return int(starts[0]["status"]), received


@pytest.mark.parametrize("environ", [{"DO_NOT_TRACK": "1"}, {"HELIOS_TELEMETRY_ENABLED": "false"}])
def test_locked_off_is_204(
    make_telemetry: Callable[..., Telemetry], db_path: Path, environ: dict[str, str]
) -> None:
    make_telemetry(enabled=None).set_enabled(True)
    t = make_telemetry(enabled=None, environ=environ)
    assert post(client(t), {"bulk_edit": 2}).status_code == 204
    assert stored(db_path) == {}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.testserver"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Referer": "http://testserver/dashboard"},  # a Referer alone is not enough
        {},  # no browser evidence at all: writes are refused
    ],
)
def test_cross_site_requests_are_403(on: Telemetry, db_path: Path, headers: dict[str, str]) -> None:
    c = client(on)
    r = c.post(URL, json={"actions": {"bulk_edit": 1}}, headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert r.json()["reason"] == "cross_site"
    assert r.json()["detail"].startswith("cross-site request: ")
    assert stored(db_path) == {} and drops(db_path) == {}


def test_with_declared_origins_another_host_is_403(on: Telemetry, db_path: Path) -> None:
    c = client(on, origins=["https://helios.example"])
    rebound = {"Host": "testserver", "Origin": "http://testserver"}  # DNS-rebinding shape
    r = c.post(URL, json={"actions": {"bulk_edit": 1}}, headers=rebound)
    assert r.status_code == 403 and r.json()["reason"] == "cross_site"
    proxied = {"Host": "helios.example", "Origin": "https://helios.example"}
    assert c.post(URL, json={"actions": {"bulk_edit": 1}}, headers=proxied).status_code == 202
    assert stored(db_path) == {("ui", "bulk_edit"): 1}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://testserver"},
    ],
)
def test_same_origin_evidence_is_enough(
    on: Telemetry, db_path: Path, headers: dict[str, str]
) -> None:
    r = client(on).post(URL, json={"actions": {"bulk_edit": 1}}, headers=headers)
    assert r.status_code == 202
    assert stored(db_path) == {("ui", "bulk_edit"): 1}


def test_a_host_hook_decides_and_may_be_async(on: Telemetry, db_path: Path) -> None:
    asked: list[str] = []

    async def authorize(request: Request, action: str) -> bool:
        asked.append(action)
        return request.headers.get("x-session") == "valid"

    c = client(on, authorize=authorize)
    refused = post(c, {"bulk_edit": 1})
    assert refused.status_code == 403 and refused.json()["reason"] == "denied"
    assert post(c, {"bulk_edit": 1}, headers={"X-Session": "valid"}).status_code == 202
    assert asked == ["ui_actions", "ui_actions"]
    assert stored(db_path) == {("ui", "bulk_edit"): 1}


HOSTILE = [
    ("nested", {"actions": {"bulk_edit": {"a": {"b": [1, 2, {"c": 3}]}}}}, "invalid_count", 1),
    ("huge number", {"actions": {"bulk_edit": 10**30}}, "invalid_count", 1),
    ("negative", {"actions": {"bulk_edit": -3}}, "invalid_count", 1),
    ("zero", {"actions": {"bulk_edit": 0}}, "invalid_count", 1),
    ("over 1000", {"actions": {"bulk_edit": 1001}}, "invalid_count", 1),
    ("float", {"actions": {"bulk_edit": 2.0}}, "invalid_count", 1),
    ("bool", {"actions": {"bulk_edit": True}}, "invalid_count", 1),
    ("string count", {"actions": {"bulk_edit": "2"}}, "invalid_count", 1),
    ("email", {"actions": {"bob@example.com": 1}}, "invalid_name", 1),
    ("emails", {"actions": {"a@x.io": 1, "b@x.io": 2, "export_csv": 0}}, "invalid_name", 3),
    ("path", {"actions": {"/users/42": 1}}, "invalid_name", 1),
    ("uppercase", {"actions": {"Bulk_Edit": 1}}, "invalid_name", 1),
    ("long name", {"actions": {"a" * 65: 1}}, "invalid_name", 1),
    ("51 names", {"actions": {f"name_{i}": 1 for i in range(51)}}, "too_many_names", 1),
    ("list", {"actions": ["bulk_edit"]}, "invalid_actions", 1),
    ("empty", {"actions": {}}, "invalid_actions", 1),
    ("extra key", {"actions": {"bulk_edit": 1}, "user": "bob"}, "invalid_body", 1),
    ("not an object", ["bulk_edit"], "invalid_body", 1),
]


@pytest.mark.parametrize(
    ("doc", "error", "dropped"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_bodies_are_422_with_nothing_stored(
    on: Telemetry, db_path: Path, doc: object, error: str, dropped: int
) -> None:
    r = client(on).post(URL, json=doc, headers=SAME_ORIGIN)
    assert r.status_code == 422
    assert r.json()["error"] == error and r.json()["detail"]
    assert stored(db_path) == {}
    assert drops(db_path) == {"invalid_name": dropped}  # refused, and counted


def test_one_bad_name_in_a_batch_loses_only_itself(on: Telemetry, db_path: Path) -> None:
    r = post(
        client(on),
        {
            "bulk_edit": 2,
            "bob@example.com": 1,
            "export_csv": 1.5,
            "table.zoom": 4,
            "column_sort": 3,
        },
    )
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 5,
        "dropped": 6,
        "dropped_by_reason": {"unknown_name": 4, "invalid_name": 2, "not_stored": 0},
    }
    assert stored(db_path) == {("ui", "bulk_edit"): 2, ("ui", "column_sort"): 3}
    assert drops(db_path) == {"invalid_name": 2, "unknown_name": 4}


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"actions": {"bulk_edit": NaN}}', b"\xff\xfe\x00", b"", b"[" * 6000],
    ids=["broken", "nan", "not utf-8", "empty", "deep"],
)
def test_invalid_json_is_422(on: Telemetry, db_path: Path, raw: bytes) -> None:
    headers = {**SAME_ORIGIN, "Content-Type": "application/json"}
    r = client(on).post(URL, content=raw, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_json"
    assert stored(db_path) == {} and drops(db_path) == {"invalid_name": 1}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data", None],
)
def test_a_wrong_content_type_is_415(
    on: Telemetry, db_path: Path, content_type: str | None
) -> None:
    headers = dict(SAME_ORIGIN)
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps({"actions": {"bulk_edit": 1}}).encode()
    r = client(on).post(URL, content=body, headers=headers)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert stored(db_path) == {} and drops(db_path) == {"invalid_name": 1}


def test_a_json_content_type_with_parameters_is_fine(on: Telemetry, db_path: Path) -> None:
    headers = {**SAME_ORIGIN, "Content-Type": "Application/JSON; charset=utf-8"}
    r = client(on).post(URL, content=b'{"actions": {"bulk_edit": 1}}', headers=headers)
    assert r.status_code == 202


def _padded(size: int) -> bytes:
    """A body that would be valid but for its size."""
    head = b'{"actions": {"bulk_edit": 1}}'
    return head + b" " * (size - len(head))


def test_the_size_limit_is_exactly_8_kib(on: Telemetry, db_path: Path) -> None:
    headers = {**SAME_ORIGIN, "Content-Type": "application/json"}
    c = client(on)
    assert c.post(URL, content=_padded(8192), headers=headers).status_code == 202
    r = c.post(URL, content=_padded(8193), headers=headers)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert stored(db_path) == {("ui", "bulk_edit"): 1}


def test_a_1_mb_body_is_413_by_content_length(on: Telemetry, db_path: Path) -> None:
    headers = {**SAME_ORIGIN, "Content-Type": "application/json"}
    r = client(on).post(URL, content=_padded(1024 * 1024), headers=headers)
    assert r.status_code == 413
    assert stored(db_path) == {} and drops(db_path) == {"invalid_name": 1}


def test_a_streamed_1_mb_body_is_counted_while_reading(on: Telemetry, db_path: Path) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"actions": {"bulk_edit": 1}}'
        for _ in range(256):
            sent.append(4096)
            yield b" " * 4096

    headers = {**SAME_ORIGIN, "Content-Type": "application/json"}
    r = client(on).post(URL, content=chunks(), headers=headers)
    assert r.status_code == 413
    assert len(sent) <= 3  # refused after about 8 KiB, not after reading the megabyte
    assert stored(db_path) == {} and drops(db_path) == {"invalid_name": 1}


def test_a_lying_content_length_is_refused(on: Telemetry, db_path: Path) -> None:
    headers = {**SAME_ORIGIN, "Content-Type": "application/json", "Content-Length": "ten"}
    r = client(on).post(URL, content=b'{"actions": {"bulk_edit": 1}}', headers=headers)
    assert r.status_code == 400
    assert stored(db_path) == {}


def test_over_real_http_a_1_mb_chunked_body_is_413(on: Telemetry, db_path: Path) -> None:
    app = Starlette(routes=telemetry_routes(telemetry=on, ui_actions=DECLARED))

    def chunks():
        yield b'{"actions": {"bulk_edit": 1}}'
        for _ in range(256):
            yield b" " * 4096

    with serve(app) as base, httpx.Client(base_url=base) as http:
        origin = {"Origin": base, "Content-Type": "application/json"}
        r = http.post(URL, content=chunks(), headers=origin)
        assert r.status_code == 413
        ok = http.post(URL, json={"actions": {"bulk_edit": 3}}, headers={"Origin": base})
        assert ok.status_code == 202
    assert stored(db_path) == {("ui", "bulk_edit"): 3}


def test_other_methods_are_405(on: Telemetry) -> None:
    c = client(on)
    assert c.get(URL, headers=SAME_ORIGIN).status_code == 405
    assert c.put(URL, json={}, headers=SAME_ORIGIN).status_code == 405


def test_bad_declared_names_fail_when_the_routes_are_built(on: Telemetry) -> None:
    with pytest.raises(ValueError, match="breaks the naming rules"):
        telemetry_routes(telemetry=on, ui_actions=["bulk edit"])
