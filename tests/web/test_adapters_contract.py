"""One contract, four adapters: Starlette and FastAPI under uvicorn, Flask and Django under
gunicorn, each serving the same API (``tests/web/apps/``) as a real server.

The same requests give the same names and exact counts; what is not counted is not
counted; the settings PUT obeys the hook and the origin check; UI-action bodies get
the same answers; the privacy page says the same things.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from outbox import Telemetry, disclosure, store
from outbox.web.endpoints import TelemetryEndpoints
from outbox.web.view import Viewer
from tests.web.apps.common import UI_ACTIONS
from tests.web.conftest import drops, stored
from tests.web.servers import ADAPTERS, Server, running

UNKNOWN = "unknown_name"

#: (method, path, status or None for the framework's own answer, name | UNKNOWN | None).
REQUESTS: list[tuple[str, str, int | None, str | None]] = [
    ("GET", "/api/users", 200, "users.list"),
    ("POST", "/api/users", 201, "users.create"),
    ("GET", "/api/users/me", 200, "users.me.get"),
    ("GET", "/api/users/by-name/jdoe", 200, "users.by_name.get"),
    ("GET", "/api/users/1042", 200, "users.get"),
    ("PUT", "/api/users/1042", 200, "users.update"),
    ("DELETE", "/api/users/1043", 204, "users.delete"),
    ("GET", "/api/users/1042/groups", 200, "users.groups.list"),
    ("POST", "/api/v1/projects/apollo/deploy", 202, "projects.deploy.create"),
    ("GET", "/api/relay/users/jdoe", 200, "users.get"),
    ("GET", "/api/relay/groups/eng-team/members", 200, "groups.members.list"),
    ("POST", "/api/relay/widgets", 201, "widgets.create"),
    ("GET", "/api/relay/hosts/db01", 200, UNKNOWN),
    # not counted
    ("GET", "/api/relay/nothing/here", 404, None),
    ("GET", "/api/users/9999", 404, None),
    ("GET", "/api/old-users", 302, None),
    ("GET", "/api/broken", 500, None),
    ("GET", "/api/does-not-exist", 404, None),
    ("GET", "/api/users/", None, None),  # a trailing slash: redirect or 404
    ("GET", "/healthz", 200, None),
    ("HEAD", "/api/users", None, None),
    ("OPTIONS", "/api/users", None, None),
    ("GET", "/api/settings/telemetry", 200, None),
    ("GET", "/settings/privacy", 200, None),
    ("GET", "/api/telemetry/help", 200, None),
    ("GET", "/telemetry/help", 200, None),
    ("GET", "/telemetry/static/telemetry.js", 200, None),
    ("GET", "/telemetry/static/nothing.js", 404, None),
]
ROUNDS = 2


def sharing_on(db_path: Path) -> None:
    """The organisation's choice, read by the server's ``outbox.telemetry``."""
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    t.set_enabled(True)
    t.close()


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "still not true after 5 s"
        time.sleep(0.02)


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_same_requests_give_the_same_names_and_exact_counts(
    adapter: str, db_path: Path
) -> None:
    sharing_on(db_path)
    with running(adapter, db_path) as server:
        with server.client() as c:
            for _ in range(ROUNDS):
                for method, path, status, _name in REQUESTS:
                    # uvicorn closes the connection after an app raised: don't reuse it
                    close = {"Connection": "close"} if path == "/api/broken" else {}
                    answer = c.request(method, path, headers=close)
                    if status is not None:
                        assert answer.status_code == status, (method, path, answer.text[:200])
            ui = c.post(
                "/api/telemetry/ui-actions",
                json={"actions": {"bulk_edit": 2, "column_sort": 1}},
                headers={"Origin": server.url, **server.csrf()},
            )
            assert ui.status_code == 202, ui.text
        named = Counter(n for _, _, _, n in REQUESTS if n not in (None, UNKNOWN))
        want = {("api", n): ROUNDS * k for n, k in named.items()}
        want |= {("ui", "bulk_edit"): 2, ("ui", "column_sort"): 1}
        wait_for(lambda: stored(db_path) == want)  # 50 ms after the responses
        output = server.stop()
    assert stored(db_path) == want, output
    unknown = ROUNDS * sum(1 for *_, n in REQUESTS if n == UNKNOWN)
    assert drops(db_path) == {"unknown_name": unknown}

    # Every process wrote its tally when it stopped (the "no silent zero" record).
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    with t.connect() as conn:
        tally = store.web_tracking(conn)
    t.close()
    assert tally is not None, output
    relay_counted = ROUNDS * 3
    assert tally["RouteTracking"]["counted"] == sum(named.values()) * ROUNDS - relay_counted
    assert tally["RouteTracking"]["warning"] is None
    relay = tally["RelayTracking /api/relay"]
    assert (relay["counted"], relay["unknown_name"]) == (relay_counted, unknown)
    assert relay["warning"] is None


# -- the settings PUT -----------------------------------------------------------------------


def put(server: Server, enabled: bool, **headers: str) -> httpx.Response:
    with server.client() as c:
        return c.put("/api/settings/telemetry", json={"enabled": enabled}, headers=headers)


def refusal(answer: httpx.Response) -> tuple[int, str | None]:
    try:
        return answer.status_code, answer.json().get("reason")
    except json.JSONDecodeError:
        return answer.status_code, None


def test_the_settings_put_obeys_the_hook_and_the_origin_check(adapter: str, db_path: Path) -> None:
    with running(adapter, db_path, CONTRACT_ORIGINS="@self") as server:
        csrf = server.csrf()
        same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin", **csrf}
        admin = {"X-Role": "admin"}
        evil_host = server.host.replace("127.0.0.1", "evil.example")
        cases: list[tuple[str, dict[str, str], tuple[int, str | None]]] = [
            ("not an administrator", same, (403, "not_admin")),
            ("cross-site", {**same, **admin, "Sec-Fetch-Site": "cross-site"}, (403, "cross_site")),
            ("no browser evidence", {**admin, **csrf}, (403, "cross_site")),
            (
                "a Host that is not declared",
                {**admin, **csrf, "Host": evil_host, "Origin": f"http://{evil_host}"},
                (403, "cross_site"),
            ),
        ]
        for what, headers, want in cases:
            assert refusal(put(server, True, **headers)) == want, what
        # Another site's Origin: refused (Django's CSRF layer answers first, with its page).
        other = put(server, True, **{**same, **admin, "Origin": "http://evil.example"})
        assert other.status_code == 403
        assert refusal(other) == (
            (403, None) if server.adapter == "django" else (403, "cross_site")
        )

        t = Telemetry(db_path=db_path, enabled=None, environ={})
        assert t.decision().source == "default"  # nothing changed
        answer = put(server, True, **same, **admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["mode"] == "on"
        assert t.decision().mode == "on"
        for what, headers, want in cases:
            assert refusal(put(server, False, **headers)) == want, what
        assert t.decision().mode == "on"
        t.close()


def test_without_a_hook_the_settings_are_read_only_and_without_origins_only_loopback(
    adapter: str, db_path: Path
) -> None:
    with running(adapter, db_path, CONTRACT_HOOK="none") as server:
        same = {"Origin": server.url, "X-Role": "admin", **server.csrf()}
        answer = put(server, True, **same)
        assert refusal(answer) == (403, "no_hook")
        assert answer.json()["detail"] == (
            "no authorisation hook configured: the settings endpoint is read-only"
        )
        with server.client() as c:
            settings = c.get("/api/settings/telemetry").json()
        assert (settings["may_change"], settings["mode"]) == (False, "off")
    with running(adapter, db_path) as server:  # a hook, no origins declared
        csrf = server.csrf()
        host = server.host.replace("127.0.0.1", "helios.example")
        remote = {"Host": host, "Origin": f"http://{host}", "X-Role": "admin", **csrf}
        assert refusal(put(server, True, **remote)) == (403, "cross_site")
        loopback = {"Origin": server.url, "X-Role": "admin", **csrf}
        assert put(server, True, **loopback).status_code == 200
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    assert (t.decision().mode, t.decision().source) == ("on", "organization_setting")
    t.close()


# -- UI-action bodies ----------------------------------------------------------------------


def ui_bodies() -> list[tuple[str, bytes, str]]:
    """(what, body, content type)."""
    many = {f"name{i}": 1 for i in range(51)}
    return [
        ("good", b'{"actions":{"bulk_edit":2,"export_csv":1}}', "application/json"),
        ("one bad name", b'{"actions":{"bulk_edit":1,"Bad Name":1}}', "application/json"),
        ("undeclared", b'{"actions":{"table.zoom":3,"column_sort":1}}', "application/json"),
        ("bad counts", b'{"actions":{"bulk_edit":0,"export_csv":1001}}', "application/json"),
        ("a float", b'{"actions":{"bulk_edit":1.5}}', "application/json"),
        ("not json", b"{not json", "application/json"),
        ("duplicate keys", b'{"actions":{"bulk_edit":1,"bulk_edit":2}}', "application/json"),
        ("no actions", b'{"actions":{}}', "application/json"),
        ("too many names", json.dumps({"actions": many}).encode(), "application/json"),
        ("too large", b'{"actions":{"bulk_edit":1}}' + b" " * 9000, "application/json"),
        ("text", b'{"actions":{"bulk_edit":1}}', "text/plain"),
        ("an email", b'{"actions":{"bob@example.com":1}}', "application/json"),
    ]


def test_ui_action_bodies_are_answered_and_counted_identically(adapter: str, db_path: Path) -> None:
    sharing_on(db_path)
    answers = []
    with running(adapter, db_path) as server:
        headers = {"Origin": server.url, **server.csrf()}
        with server.client() as c:
            for what, body, content_type in ui_bodies():
                answer = c.post(
                    "/api/telemetry/ui-actions",
                    content=body,
                    headers={**headers, "Content-Type": content_type},
                )
                answers.append((what, answer.status_code, answer.json()))
            denied = c.post(
                "/api/telemetry/ui-actions",
                json={"actions": {"bulk_edit": 1}},
                headers={**headers, "X-Deny": "yes"},
            )
        want = {("ui", "bulk_edit"): 3, ("ui", "export_csv"): 1, ("ui", "column_sort"): 1}
        wait_for(lambda: stored(db_path) == want)
    assert refusal(denied) == (403, "denied")
    assert answers == EXPECTED_UI_ANSWERS
    assert stored(db_path) == want
    assert drops(db_path) == {"invalid_name": 11, "unknown_name": 3}  # table.zoom x3


def _accepted(accepted: int, unknown: int = 0, invalid: int = 0) -> dict[str, Any]:
    return {
        "accepted": accepted,
        "dropped": unknown + invalid,
        "dropped_by_reason": {"unknown_name": unknown, "invalid_name": invalid, "not_stored": 0},
    }


RULES = (
    "lowercase letters, digits and _, segments joined by '.', each starting with a letter, "
    "at most 64 characters"
)
COUNT = "must be an integer from 1 to 1000"
EXPECTED_UI_ANSWERS: list[tuple[str, int, dict[str, Any]]] = [
    ("good", 202, _accepted(3)),
    ("one bad name", 202, _accepted(1, invalid=1)),
    ("undeclared", 202, _accepted(1, unknown=3)),
    (
        "bad counts",
        422,
        {
            "error": "invalid_count",
            "detail": f"no entry can be used: 2 invalid; the first: the count of name 1 of 2 "
            f"{COUNT}, not 0",
        },
    ),
    (
        "a float",
        422,
        {
            "error": "invalid_count",
            "detail": f"no entry can be used: 1 invalid; the first: the count of name 1 of 1 "
            f"{COUNT}, not a number with a fraction or exponent",
        },
    ),
    (
        "not json",
        422,
        {
            "error": "invalid_json",
            "detail": "the body is not valid JSON (Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1))",
        },
    ),
    (
        "duplicate keys",
        422,
        {"error": "duplicate_key", "detail": "the body names the same key twice"},
    ),
    ("no actions", 422, {"error": "invalid_actions", "detail": '"actions" names no UI action'}),
    (
        "too many names",
        422,
        {
            "error": "too_many_names",
            "detail": '"actions" names 51 UI actions; at most 50 per request',
        },
    ),
    ("too large", 413, {"error": "too_large", "detail": "the body is over 8192 bytes"}),
    (
        "text",
        415,
        {
            "error": "unsupported_media_type",
            "detail": "send the body as application/json, not text/plain",
        },
    ),
    (
        "an email",
        422,
        {
            "error": "invalid_name",
            "detail": f"no entry can be used: 1 invalid; the first: name 1 of 1 breaks the naming "
            f"rules ({RULES})",
        },
    ),
]


# -- the privacy page ----------------------------------------------------------------------


class _Lists(HTMLParser):
    """The text of each ``<li>`` under the element ids asked for."""

    def __init__(self, *ids: str) -> None:
        super().__init__()
        self.lists: dict[str, list[str]] = {i: [] for i in ids}
        self._in: str | None = None
        self._li = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element_id = dict(attrs).get("id")
        if element_id in self.lists:
            self._in = element_id
        self._li = tag == "li" and self._in is not None

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul":
            self._in = None
        self._li = False

    def handle_data(self, data: str) -> None:
        if self._li and self._in is not None:
            self.lists[self._in].append(data)


def without_csrf(html: str) -> str:
    return re.sub(r' data-helios-csrf-[a-z]+="[^"]*"', "", html)


def test_the_privacy_page_says_the_same_everywhere(adapter: str, db_path: Path) -> None:
    sharing_on(db_path)
    # A count two hours old and no worker ever seen: the page says the worker is missing.
    past = Telemetry(db_path=db_path, enabled=None, environ={}, clock=lambda: time.time() - 7200)
    past.track_api_call("users.list")
    past.close()
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    core = TelemetryEndpoints(telemetry=t, hook=True, ui_actions=UI_ACTIONS)
    page_spec = next(s for s in core.specs() if s.name == "privacy_page")
    with running(adapter, db_path) as server, server.client() as c:
        user = c.get("/settings/privacy")
        admin = c.get("/settings/privacy", headers={"X-Role": "admin"})
        expected = core.respond(page_spec, viewer=Viewer(hook=True, admin=False))
    t.close()
    assert user.status_code == 200 and admin.status_code == 200
    assert user.headers["content-security-policy"] == expected.headers["Content-Security-Policy"]
    assert without_csrf(user.text) == expected.body.decode()  # byte for byte, but the token
    lists = _Lists("helios-collected", "helios-not-collected")
    lists.feed(user.text)
    assert lists.lists["helios-collected"] == list(disclosure.COLLECTED)
    assert lists.lists["helios-not-collected"] == list(disclosure.NOT_COLLECTED)
    health = t.worker()
    assert health is not None and health.message is not None
    assert 'id="helios-worker" class="helios-warning" role="alert">' in user.text
    assert "outbox-worker --once" in user.text
    # Only the administrator sees exactly what would be sent (and that nothing was yet).
    assert 'id="helios-what-is-sent"' not in user.text
    assert 'id="helios-what-is-sent"' in admin.text
    assert "No heartbeat has been sent yet." in admin.text
    shown = re.search(r'<pre id="helios-next-heartbeat" tabindex="0">(.*?)</pre>', admin.text, re.S)
    assert shown is not None
    assert json.loads(shown.group(1).replace("&quot;", '"'))["api_usage"] == {"users.list": 1}
    if adapter == "django":
        assert 'data-helios-csrf-header="X-CSRFTOKEN"' in user.text
        assert 'data-helios-csrf-cookie="csrftoken"' in user.text
    else:
        assert "data-helios-csrf" not in user.text


def test_django_refuses_the_writes_without_its_csrf_token(db_path: Path) -> None:
    """Under Django the UI-action POST and the settings PUT need the CSRF token, the
    Django way (the page sets the cookie and names the header; telemetry.js sends it)."""
    sharing_on(db_path)
    with running("django", db_path) as server, server.client() as c:
        same = {"Origin": server.url, "X-Role": "admin"}
        body = {"actions": {"bulk_edit": 1}}
        refused = [
            c.post("/api/telemetry/ui-actions", json=body, headers=same),
            c.put("/api/settings/telemetry", json={"enabled": False}, headers=same),
        ]
        assert [r.status_code for r in refused] == [403, 403]
        assert all("CSRF" in r.text for r in refused)
        csrf = server.csrf()
        accepted = c.post("/api/telemetry/ui-actions", json=body, headers={**same, **csrf})
        assert accepted.status_code == 202
        wait_for(lambda: stored(db_path) == {("ui", "bulk_edit"): 1})
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    assert t.decision().mode == "on"  # the PUT without the token changed nothing
    t.close()
