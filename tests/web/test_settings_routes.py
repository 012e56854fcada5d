"""GET/PUT /api/settings/telemetry, the privacy page, help text and static files."""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape, unescape
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from outbox import Telemetry, disclosure, heartbeats, store
from outbox.cli import CliContext
from outbox.cli import cli as cli_group
from outbox.web import TOGGLE_LABEL, same_origin, telemetry_routes
from tests.support.clock import FakeClock
from tests.web.conftest import ORIGIN, SAME_ORIGIN, Client, stored

URL = "/api/settings/telemetry"


def everyone_is_admin(request: Request, action: str) -> bool:
    return True


def client(telemetry: Telemetry, **kwargs: object) -> Client:
    """The routes with a hook that grants everything and this test client's origin, unless
    a test says otherwise."""
    kwargs.setdefault("authorize", everyone_is_admin)
    kwargs.setdefault("origins", [ORIGIN])
    return Client(Starlette(routes=[*telemetry_routes(telemetry=telemetry, **kwargs)]))  # type: ignore[arg-type]


def put(c: Client, enabled: object, **headers: str) -> object:
    return c.put(URL, json={"enabled": enabled}, headers={**SAME_ORIGIN, **headers})


# -- GET -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "org", "expected"),
    [
        ({"enabled": None}, None, ("off", False, "default", False, None)),
        ({"enabled": True}, None, ("on", True, "HELIOS_TELEMETRY_ENABLED", False, None)),
        ({"enabled": "local"}, None, ("local", True, "HELIOS_TELEMETRY_ENABLED", False, None)),
        ({"enabled": None}, True, ("on", True, "organization_setting", False, None)),
        ({"enabled": True}, False, ("off", False, "organization_setting", False, None)),
        (
            {"enabled": None, "environ": {"DO_NOT_TRACK": "1"}},
            True,
            ("off", False, "DO_NOT_TRACK", True, "DO_NOT_TRACK"),
        ),
        (
            {"enabled": None, "environ": {"HELIOS_TELEMETRY_ENABLED": "false"}},
            True,
            ("off", False, "HELIOS_TELEMETRY_ENABLED", True, "HELIOS_TELEMETRY_ENABLED"),
        ),
    ],
)
def test_get_says_the_state_and_what_decided_it(
    make_telemetry: Callable[..., Telemetry],
    kwargs: dict[str, object],
    org: bool | None,
    expected: tuple[object, ...],
) -> None:
    if org is not None:
        make_telemetry(enabled=None).set_enabled(org)
    t = make_telemetry(**kwargs)
    r = client(t).get(URL, headers=SAME_ORIGIN)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    s = r.json()
    assert (s["mode"], s["enabled"], s["source"], s["locked"], s["locked_by"]) == expected
    d = t.decision()  # what `outbox status` shows
    assert (s["mode"], s["source"], s["locked"], s["reason"]) == (
        d.mode,
        d.source,
        d.locked,
        d.reason,
    )
    assert s["sharing"] is (s["mode"] == "on")
    assert s["collected"] == list(disclosure.COLLECTED)
    assert s["not_collected"] == list(disclosure.NOT_COLLECTED)
    assert s["privacy_policy_url"] == "https://helios.gridworx.io/privacy"
    assert s["insights_url"] == "https://helios.gridworx.io/insights"
    if s["locked"]:
        assert s["locked_by"] in s["lock_message"]


def test_get_returns_the_configured_links(on: Telemetry) -> None:
    c = client(on, privacy_policy_url="https://example.org/p", insights_url="/insights")
    s = c.get(URL).json()
    assert (s["privacy_policy_url"], s["insights_url"]) == ("https://example.org/p", "/insights")


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "//evil.example/x", "ftp://x/y", "insights"]
)
def test_unusable_links_are_refused_when_building(on: Telemetry, url: str) -> None:
    with pytest.raises(ValueError, match="insights_url"):
        telemetry_routes(telemetry=on, insights_url=url)


def test_get_cross_site_is_403(on: Telemetry) -> None:
    r = client(on).get(URL, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


# -- PUT -------------------------------------------------------------------------------


def test_put_turns_sharing_on_and_it_persists(off: Telemetry, db_path: Path) -> None:
    c = client(off)
    r = put(c, True)
    assert r.status_code == 200
    assert (r.json()["mode"], r.json()["source"]) == ("on", "organization_setting")
    assert r.json()["discarded"] == {"events": 0, "heartbeats": 0}
    assert off.decision().mode == "on" and off.enabled
    assert c.get(URL).json()["enabled"] is True
    assert off.track_ui_action("bulk_edit")
    assert stored(db_path) == {("ui", "bulk_edit"): 1}


def test_put_off_deletes_unsent_data_and_says_how_much(on: Telemetry, db_path: Path) -> None:
    for _ in range(3):
        on.track_api_call("users.list")
    on.track_ui_action("bulk_edit", 4)
    r = put(client(on), False)
    assert r.status_code == 200
    assert r.json()["discarded"] == {"events": 7, "heartbeats": 0}
    assert r.json()["message"] == (
        "Deleted 7 unsent events: nothing collected before this is sent."
    )
    assert (r.json()["enabled"], r.json()["mode"]) == (False, "off")
    assert stored(db_path) == {}  # the rows are gone, not only unsendable
    assert not on.track_ui_action("bulk_edit")
    assert stored(db_path) == {}


def test_put_needs_admin_from_the_hook(make_telemetry: Callable[..., Telemetry]) -> None:
    t = make_telemetry(enabled=None)
    asked: list[str] = []

    def authorize(request: Request, action: str) -> bool:
        asked.append(action)
        return action != "admin" or request.headers.get("x-role") == "admin"

    c = client(t, authorize=authorize)
    r = put(c, True)
    assert r.status_code == 403
    assert r.json() == {
        "error": "forbidden",
        "detail": "not an administrator",
        "reason": "not_admin",
    }
    assert t.decision().source == "default"  # nothing changed
    assert put(c, True, **{"X-Role": "admin"}).status_code == 200
    assert asked == ["admin", "admin"]
    assert t.decision().mode == "on"


def test_without_a_hook_the_settings_endpoint_is_read_only(
    make_telemetry: Callable[..., Telemetry], caplog: pytest.LogCaptureFixture
) -> None:
    t = make_telemetry(enabled=None)
    c = client(t, authorize=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "telemetry: no authorize hook was given, so the settings endpoint is read-only: "
        "nobody can turn sharing on or off from the app until a hook grants 'admin' to "
        "administrators (authorize=... where the telemetry routes are added: telemetry_routes, "
        "init_app, or the AUTHORIZE of HELIOS_TELEMETRY)"
    ]  # once, when the routes are built
    for wanted in (True, False):
        r = put(c, wanted)
        assert r.status_code == 403
        assert r.json() == {
            "error": "forbidden",
            "detail": "no authorisation hook configured: the settings endpoint is read-only",
            "reason": "no_hook",
        }
    assert t.decision().source == "default"
    s = c.get(URL, headers=SAME_ORIGIN).json()  # reading still works
    assert (s["mode"], s["may_change"]) == ("off", False)
    assert s["change_note"].startswith("This setting is read-only here")
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def test_same_origin_is_refused_as_a_hook(on: Telemetry) -> None:
    with pytest.raises(ValueError, match="authorize=same_origin would let anyone"):
        telemetry_routes(telemetry=on, authorize=same_origin)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (
            {"Origin": "https://evil.example"},
            "cross-site request: its Origin is not the host it was sent to",
        ),
        (
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
            "cross-site request: the browser says it was sent by another site (cross-site)",
        ),
        (
            {"Referer": f"{ORIGIN}/settings/privacy"},
            "cross-site request: a change needs the browser's Origin or Sec-Fetch-Site header "
            "(a Referer alone is not enough)",
        ),
        (
            {},
            "cross-site request: a change needs the browser's Origin or Sec-Fetch-Site header "
            "(a Referer alone is not enough)",
        ),
        (  # DNS rebinding: a page of evil.example whose name now points at this server
            {"Host": "evil.example", "Origin": "http://evil.example"},
            "cross-site request: the Host it was sent to is not one of the app's declared origins",
        ),
    ],
)
def test_put_cross_site_is_403_with_the_reason(
    off: Telemetry, headers: dict[str, str], detail: str
) -> None:
    r = client(off).put(URL, json={"enabled": True}, headers=headers)
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden", "detail": detail, "reason": "cross_site"}
    assert off.decision().mode == "off"


def test_without_declared_origins_only_a_loopback_host_may_switch(
    off: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(off, origins=None)
    assert "no origins were declared" in caplog.records[-1].getMessage()
    r = put(c, True)  # Host: testserver
    assert r.status_code == 403 and r.json()["reason"] == "cross_site"
    assert "no origins are declared" in r.json()["detail"]
    assert off.decision().mode == "off"
    local = {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}
    assert c.put(URL, json={"enabled": True}, headers=local).status_code == 200
    assert off.decision().mode == "on"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK"),
        ({"HELIOS_TELEMETRY_ENABLED": "no"}, "HELIOS_TELEMETRY_ENABLED"),
    ],
)
def test_put_when_the_environment_locks_it_is_409(
    make_telemetry: Callable[..., Telemetry], db_path: Path, environ: dict[str, str], variable: str
) -> None:
    t = make_telemetry(enabled=None, environ=environ)
    for wanted in (True, False):
        r = put(client(t), wanted)
        assert r.status_code == 409
        assert r.json()["error"] == "locked" and r.json()["variable"] == variable
        assert variable in r.json()["detail"]
    assert make_telemetry(enabled=None).decision().source == "default"  # nothing stored


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"enabled": "yes"}', "application/json", 422),
        (b'{"enabled": 1}', "application/json", 422),
        (b'{"enabled": true, "org": "x"}', "application/json", 422),
        (b"{", "application/json", 422),
        (b"enabled=true", "application/x-www-form-urlencoded", 415),
        (b'{"enabled": true}' + b" " * 2000, "application/json", 413),
    ],
)
def test_put_bad_bodies(off: Telemetry, body: bytes, content_type: str, status: int) -> None:
    r = client(off).put(URL, content=body, headers={**SAME_ORIGIN, "Content-Type": content_type})
    assert r.status_code == status and r.json()["error"]
    assert off.decision().source == "default"


def test_put_on_a_broken_outbox_is_503_with_the_fix(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"garbage" * 1000)
    t = make_telemetry(enabled=None)
    r = put(client(t), True)
    assert r.status_code == 503 and r.json()["error"] == "storage_error"
    assert str(db_path) in r.json()["detail"]


# -- the privacy page --------------------------------------------------------------------


def page(t: Telemetry, headers: dict[str, str] | None = None, **kwargs: object) -> str:
    r = client(t, **kwargs).get("/settings/privacy", headers={**SAME_ORIGIN, **(headers or {})})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    return r.text


def test_the_page_shows_the_toggle_lists_and_links(on: Telemetry) -> None:
    html = page(on)
    assert f'<label for="helios-share">{TOGGLE_LABEL}</label>' in html
    assert 'role="switch" id="helios-share"' in html
    assert " checked" in html and " disabled" not in html
    for line in (*disclosure.COLLECTED, *disclosure.NOT_COLLECTED):
        assert f"<li>{line}</li>" in html
    assert 'href="https://helios.gridworx.io/privacy"' in html
    assert 'href="https://helios.gridworx.io/insights"' in html
    assert 'data-helios-telemetry="on"' in html
    assert "<script>" not in html and "style=" not in html  # CSP: no inline code


def test_the_page_when_off(off: Telemetry) -> None:
    html = page(off)
    assert " checked" not in html and 'data-helios-telemetry="off"' in html
    assert "Sharing is off: telemetry is off until someone turns it on." in html


def test_the_page_when_locked_says_which_variable(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    html = page(make_telemetry(enabled=None, environ={"DO_NOT_TRACK": "1"}))
    assert " disabled" in html and " checked" not in html
    assert "This setting is locked: DO_NOT_TRACK is set" in html
    assert 'aria-describedby="helios-share-status helios-share-lock"' in html


def test_links_are_escaped(on: Telemetry) -> None:
    html = page(on, privacy_policy_url='https://example.org/p?a=1&b="2"')
    assert 'href="https://example.org/p?a=1&amp;b=&quot;2&quot;"' in html


def test_under_a_mount_the_page_points_below_it(on: Telemetry) -> None:
    routes = telemetry_routes(telemetry=on, authorize=everyone_is_admin, origins=[ORIGIN])
    app = Starlette(routes=[Mount("/helios", routes=[*routes])])
    c = Client(app)
    r = c.get("/helios/settings/privacy", headers=SAME_ORIGIN)
    assert r.status_code == 200
    assert 'src="/helios/telemetry/static/privacy.js"' in r.text
    assert 'data-helios-telemetry-settings="/helios/api/settings/telemetry"' in r.text
    assert c.get("/helios/telemetry/static/telemetry.js").status_code == 200
    assert c.put("/helios" + URL, json={"enabled": False}, headers=SAME_ORIGIN).status_code == 200


# -- help text and static files ------------------------------------------------------------


def test_help_as_json_and_html(on: Telemetry) -> None:
    from outbox.web import HELP_PARAGRAPHS, HELP_TEXT, HELP_TITLE

    c = client(on)
    j = c.get("/api/telemetry/help").json()
    assert j["title"] == HELP_TITLE and j["paragraphs"] == list(HELP_PARAGRAPHS)
    assert j["collected"] == list(disclosure.COLLECTED)
    assert j["settings_url"] == "/settings/privacy"
    html = c.get("/telemetry/help").text
    assert html.startswith('<section class="helios-help"')
    assert 'href="/settings/privacy"' in html and "DO_NOT_TRACK=1" in html
    assert HELP_TEXT.startswith(HELP_TITLE) and TOGGLE_LABEL in HELP_TEXT


@pytest.mark.parametrize(
    ("requested", "link"),
    [
        ("/acme", 'href="/acme/settings/privacy"'),
        ("/%5Cevil.example", 'href="/settings/privacy"'),  # "/\\evil.example": a link off-site
    ],
)
def test_links_under_a_mount_carry_only_plain_text_of_the_request(
    on: Telemetry, requested: str, link: str
) -> None:
    """Under ``Mount("/{org}")`` the mount point is what the client requested: the help
    and the page link below it only when every segment is plain URL text."""
    routes = telemetry_routes(telemetry=on, authorize=everyone_is_admin, origins=[ORIGIN])
    c = Client(Starlette(routes=[Mount("/{org}", routes=[*routes])]))
    html = c.get(requested + "/telemetry/help").text
    assert link in html and "evil" not in html


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("telemetry.js", "text/javascript; charset=utf-8"),
        ("privacy.js", "text/javascript; charset=utf-8"),
        ("telemetry.css", "text/css; charset=utf-8"),
    ],
)
def test_static_files(on: Telemetry, name: str, content_type: str) -> None:
    r = client(on).get(f"/telemetry/static/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == content_type
    assert len(r.content) > 500


@pytest.mark.parametrize("name", ["routes.py", "..%2Froutes.py", "../__init__.py", "nope.js"])
def test_nothing_else_is_served_as_static(on: Telemetry, name: str) -> None:
    assert client(on).get(f"/telemetry/static/{name}").status_code == 404


# -- informed consent: what an administrator sees before deciding ----------------------------


def admin_only(request: Request, action: str) -> bool:
    return action != "admin" or request.headers.get("x-role") == "admin"


def send_one_heartbeat(t: Telemetry, clock: FakeClock) -> heartbeats.Heartbeat:
    """Seal what is pending and mark it sent, as the worker would after a 200."""
    with t.connect() as conn:
        hb = heartbeats.commit_seal(
            conn,
            heartbeats.plan_seal(conn),
            heartbeat_id="0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
            now=int(clock()),
            version="1.4.2",
            edition="community",
        )
        assert hb is not None
        heartbeats.settle(conn, hb.id, status="sent", now=int(clock()) + 60, attempts=1)
    return hb


def pre(html: str, element_id: str) -> str:
    start = html.index(f'<pre id="{element_id}" tabindex="0">') + len(
        f'<pre id="{element_id}" tabindex="0">'
    )
    return unescape(html[start : html.index("</pre>", start)])


def test_an_administrator_sees_the_next_and_the_last_heartbeat(
    make_telemetry: Callable[..., Telemetry], db_path: Path, clock: FakeClock
) -> None:
    t = make_telemetry(enabled=True)
    t.track_api_call("users.list", 3)
    sent = send_one_heartbeat(t, clock)
    clock.advance(3600)
    t.track_ui_action("bulk_edit", 2)
    html = page(t, authorize=admin_only, headers={"X-Role": "admin"})
    assert 'id="helios-what-is-sent"' in html
    # exactly what `outbox preview` prints, on the same outbox at the same instant
    cli = CliRunner().invoke(
        cli_group,
        ["--db", str(db_path), "preview"],
        obj=CliContext(clock=clock),
        env={"HELIOS_TELEMETRY_ENABLED": "true"},
        catch_exceptions=False,
    )
    assert cli.exit_code == 0
    assert pre(html, "helios-next-heartbeat") + "\n" == cli.stdout
    assert json.loads(pre(html, "helios-next-heartbeat"))["ui_actions"] == {"bulk_edit": 2}
    assert json.loads(pre(html, "helios-last-heartbeat")) == json.loads(sent.payload)
    assert "The last heartbeat sent, on 2026-11-25 10:01 UTC:" in html


def test_before_anything_was_sent_the_page_says_so(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    t = make_telemetry(enabled=None)
    html = page(t, authorize=admin_only, headers={"X-Role": "admin"})
    assert "Nothing has been collected yet." in html  # no outbox at all
    assert "No heartbeat has been sent yet." in html
    t.set_enabled(True)
    html = page(t, authorize=admin_only, headers={"X-Role": "admin"})
    assert '<pre id="helios-next-heartbeat"' in html and "helios-last-heartbeat" not in html


def test_others_see_neither_heartbeat_nor_an_enabled_toggle(
    make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    t = make_telemetry(enabled=True)
    t.track_api_call("widgets.list")
    send_one_heartbeat(t, clock)
    t.track_api_call("gadgets.list")
    for kwargs in ({"authorize": admin_only}, {"authorize": None}):
        html = page(t, **kwargs)
        assert "helios-what-is-sent" not in html
        assert "widgets" not in html and "gadgets" not in html
        assert 'aria-describedby="helios-share-status helios-share-note" checked disabled>' in html
        assert 'data-helios-may-change="false"' in html
    assert "Only an administrator can change this setting." in page(t, authorize=admin_only)
    assert "This setting is read-only here" in page(t, authorize=None)
    admin = page(t, authorize=admin_only, headers={"X-Role": "admin"})
    assert 'data-helios-may-change="true"' in admin and " disabled>" not in admin


def test_the_settings_api_says_who_may_change_it(make_telemetry: Callable[..., Telemetry]) -> None:
    c = client(make_telemetry(enabled=None), authorize=admin_only)
    user = c.get(URL, headers=SAME_ORIGIN).json()
    admin = c.get(URL, headers={**SAME_ORIGIN, "X-Role": "admin"}).json()
    assert (user["may_change"], user["change_note"]) == (
        False,
        "Only an administrator can change this setting.",
    )
    assert (admin["may_change"], admin["change_note"]) == (True, None)
    assert "preview" not in admin and "next_heartbeat" not in admin  # the page shows those


# -- a worker nobody started -----------------------------------------------------------------


def test_a_missing_worker_is_shown_while_sharing_is_on(
    make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    t = make_telemetry(enabled=True)
    t.track_api_call("users.list")
    clock.advance(2 * 3600)  # the oldest unsent count waited two hours, no worker ever ran
    health = t.worker()
    assert health is not None and health.message is not None
    assert health.message.startswith("no worker has ever run on this outbox")
    c = client(t)
    assert c.get(URL, headers=SAME_ORIGIN).json()["worker_warning"] == health.message
    html = page(t)
    assert (
        f'<p id="helios-worker" class="helios-warning" role="alert">{escape(health.message)}'
        in html
    )
    assert "outbox-worker --once" in unescape(html)
    # switched off: nothing is to be sent, so no worker is missing
    r = put(c, False)
    assert r.status_code == 200 and r.json()["worker_warning"] is None
    assert c.get(URL, headers=SAME_ORIGIN).json()["worker_warning"] is None
    assert '<p id="helios-worker" class="helios-warning" role="alert" hidden></p>' in page(t)


def test_with_a_worker_there_is_no_warning(
    make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    t = make_telemetry(enabled=True)
    t.track_api_call("users.list")
    send_one_heartbeat(t, clock)
    with t.connect() as conn:
        store.put(conn, store.Meta.WORKER_SEEN_AT, int(clock()))
    clock.advance(3600)
    assert client(t).get(URL, headers=SAME_ORIGIN).json()["worker_warning"] is None


def test_the_page_and_the_api_say_when_heartbeats_go(on: Telemetry) -> None:
    assert client(on).get(URL, headers=SAME_ORIGIN).json()["schedule"] == disclosure.SCHEDULE
    assert f'<p id="helios-schedule">{escape(disclosure.SCHEDULE)}</p>' in page(on)


def test_the_page_never_renders_what_is_sent_for_others() -> None:
    from outbox.config import decide
    from outbox.web import privacy_page
    from outbox.web.page import WhatIsSent
    from outbox.web.view import Links, Viewer

    sent = WhatIsSent(next_heartbeat='{"api_usage": {"widgets.list": 1}}')
    on = decide("true", False, None)
    assert "widgets" not in privacy_page(on, Links(), viewer=Viewer(hook=True), sent=sent)
    admin = Viewer(hook=True, admin=True)
    assert "widgets" in privacy_page(on, Links(), viewer=admin, sent=sent)


def test_the_outbox_is_not_even_read_for_others(db_path: Path) -> None:
    class Counting(Telemetry):
        previews = 0

        def preview(self) -> dict[str, object] | None:
            Counting.previews += 1
            return super().preview()

    t = Counting(db_path=db_path, enabled=True, environ={})
    page(t, authorize=admin_only)
    assert Counting.previews == 0
    page(t, authorize=admin_only, headers={"X-Role": "admin"})
    assert Counting.previews == 1
    t.close()
