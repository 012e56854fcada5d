"""End to end in real Chromium: the example host app, telemetry.js and the privacy page.

Debian's Chromium (``apt-get install chromium``; never ``playwright install``) driven
by Playwright, against the example app under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from collector import Storage, create_app
from collector.server import serve_in_thread
from outbox import Telemetry
from outbox.contract import PAYLOAD_KEYS
from outbox.web import BADGE_TEXT, TOGGLE_LABEL
from tests.support.clock import FakeClock
from tests.support.env import child_env
from tests.web.conftest import drops, serve, stored

pytestmark = [pytest.mark.slow, pytest.mark.browser]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    # hermetic: no DNS at all except loopback
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
UI_URL = "/api/telemetry/ui-actions"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def app_for(telemetry: Telemetry, flush_ms: int = 60_000):
    from examples.host_app import create_app

    return create_app(telemetry, flush_ms=flush_ms)


def wait_for(
    check: Callable[[], object],
    page: Page | None = None,
    timeout: float = 20.0,
    show: Callable[[], object] | None = None,
) -> None:
    """Poll until ``check()`` is truthy. The unload beacon usually arrives 20-150 ms after
    a close, but on a busy machine Chromium has been seen to send it seconds later: the
    wait is long, a passing test does not pay for it.

    With a live ``page``, wait through Playwright so that its event handlers (route
    interception) keep running meanwhile; the sync API only runs them inside its calls.
    ``show``: what to print when the time is up (e.g. what the outbox holds by then).
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            seen = "" if show is None else f"; by then: {show()!r}"
            raise AssertionError(f"still not true after {timeout} s{seen}")
        if page is None:
            time.sleep(0.02)
        else:
            page.wait_for_timeout(20)


def open_dashboard(page: Page, base: str) -> None:
    page.goto(base + "/")
    page.wait_for_selector("body[data-loaded=true]")


def sign_in(page: Page, base: str, user: str) -> None:
    """Sign in with the example app's form (``admin`` is an administrator, ``user`` is not)."""
    page.goto(base + "/signin")
    page.fill("#username", user)
    page.fill("#password", f"{user}-password")
    with page.expect_navigation():
        page.click("#sign-in-submit")
    expect(page.locator("#signed-in")).to_contain_text(f"Signed in as {user}")


def click_the_buttons(page: Page) -> None:
    """bulk_edit x2, export_csv x1, column_sort x3, and the sync command once."""
    page.click("#bulk-edit")
    page.click("#bulk-edit")
    page.click("#export-csv")
    page.click("#sort-name")
    page.click("#sort-group")
    page.click("#sort-name")
    page.click("#sync")
    expect(page.locator("#message")).to_have_text("Synced 3 users.")


CLICKED = {
    ("ui", "bulk_edit"): 2,
    ("ui", "export_csv"): 1,
    ("ui", "column_sort"): 3,
    ("api", "users.list"): 1,  # the dashboard's table, through the relay
    ("command", "sync"): 1,
}


def telemetry_module(page: Page, expression: str) -> object:
    return page.evaluate(f"import('/telemetry/static/telemetry.js').then((m) => {expression})")


def insights_totals(insights: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(kind, name) -> count from the collector's /api/insights (its per-kind maps)."""
    return {
        (kind, name): int(count)
        for kind, key in PAYLOAD_KEYS.items()
        for name, count in insights[key].items()
    }


def deliver_to_a_collector(
    db_path: Path, tmp_path: Path, worker: Sequence[str] = (sys.executable, "-m", "worker")
) -> dict[tuple[str, str], int]:
    """Run ``worker --once`` (default ``python -m worker``) against a collector on loopback;
    return its totals."""
    storage = Storage(str(tmp_path / "collector.db"))
    try:
        # One instance: every name public (the collector's default K is 3).
        with serve_in_thread(create_app(storage, min_instances=1)) as collector:
            run = subprocess.run(
                [*worker, "--once"],
                env=child_env(
                    HELIOS_TELEMETRY_DB=str(db_path),
                    HELIOS_TELEMETRY_ENDPOINT=collector.url + "/api/instances/heartbeat",
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stdout + run.stderr
            return insights_totals(httpx.get(collector.url + "/api/insights", timeout=10).json())
    finally:
        storage.close()


# -- (a) sharing on ---------------------------------------------------------------------


def share_and_leave(browser: Browser, t: Telemetry, db_path: Path, leave: str) -> None:
    """Sharing on: click the dashboard's buttons, leave the page, wait for the outbox."""
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        open_dashboard(page, base)
        click_the_buttons(page)
        # Nothing is sent before the page is left (the flush timer is a minute here).
        assert stored(db_path) == {k: v for k, v in CLICKED.items() if k[0] != "ui"}
        assert telemetry_module(page, "m.pendingActions()") == 6
        if leave == "close_page":
            page.close()
        else:
            page.goto(base + "/settings/privacy")
        wait_for(lambda: stored(db_path) == CLICKED)
        context.close()


@pytest.mark.parametrize("leave", ["close_page", "navigate_away"])
def test_a_sharing_on_clicks_and_leaving_put_exactly_those_counts_in_the_outbox(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path, leave: str
) -> None:
    t = make_telemetry(enabled=None)
    t.set_enabled(True)
    share_and_leave(browser, t, db_path, leave)
    assert stored(db_path) == CLICKED


def test_a_after_the_worker_the_collector_shows_them(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path, tmp_path: Path
) -> None:
    t = make_telemetry(enabled=None)
    t.set_enabled(True)
    share_and_leave(browser, t, db_path, "close_page")
    assert deliver_to_a_collector(db_path, tmp_path) == CLICKED


def test_a_the_flush_timer_sends_while_the_page_stays_open(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=True)
    with serve(app_for(t, flush_ms=150)) as base:
        context = browser.new_context()
        page = context.new_page()
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.method) if UI_URL in r.url else None)
        open_dashboard(page, base)
        page.click("#bulk-edit")
        page.click("#export-csv")
        wait_for(lambda: stored(db_path).get(("ui", "export_csv")) == 1)
        page.click("#bulk-edit")
        wait_for(lambda: stored(db_path).get(("ui", "bulk_edit")) == 2)
        assert telemetry_module(page, "m.pendingActions()") == 0
        assert posts == ["POST", "POST"]  # one batch per flush, not one per click
        context.close()


def test_a_odd_input_never_throws_and_undeclared_names_are_dropped(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=True)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        open_dashboard(page, base)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        result = telemetry_module(
            page,
            "{ for (const n of [null, 42, {}, 'Bad Name', 'bob@example.com', 'x'.repeat(65),"
            " 'table.zoom', 'table.zoom', 'bulk_edit']) m.trackUIAction(n);"
            " for (let i = 0; i < 2500; i++) m.trackUIAction('export_csv');"
            " return m.pendingActions(); }",
        )
        assert result == 2503  # only the three valid names were counted
        page.close()
        wait_for(lambda: stored(db_path).get(("ui", "export_csv")) == 2500)
        context.close()
    assert errors == []
    assert stored(db_path) == {
        ("api", "users.list"): 1,
        ("ui", "bulk_edit"): 1,
        ("ui", "export_csv"): 2500,  # sent as 1000 + 1000 + 500: the server's limit per name
    }
    assert drops(db_path).get("unknown_name") == 2


# -- (b) sharing off --------------------------------------------------------------------


class Recording:
    """ASGI wrapper that notes the method and path of every request the server receives."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def test_b_sharing_off_no_request_reaches_the_endpoint_and_nothing_is_stored(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=None)  # off: nobody turned it on
    server = Recording(app_for(t, flush_ms=100))
    with serve(server) as base:
        context = browser.new_context()
        intercepted: list[str | None] = []

        def intercept(route, request) -> None:  # noqa: ANN001
            intercepted.append(request.post_data)
            route.continue_()

        # Interception sees what a live page sends; a beacon sent while the page is
        # unloading may bypass it (Chromium sends it on the page's behalf after it
        # is gone), so the server's own record is what proves that nothing arrived.
        context.route(f"**{UI_URL}", intercept)
        page = context.new_page()
        open_dashboard(page, base)
        click_the_buttons(page)
        assert telemetry_module(page, "[m.telemetryMode(), m.pendingActions()]") == ["off", 0]
        telemetry_module(page, "m.flush(true)")  # nothing counted, so nothing to send
        page.goto(base + "/settings/privacy")  # pagehide + visibilitychange: nothing to send
        page.close()
        assert not db_path.exists()  # not even an outbox file

        # Control: the same browser, interception and server do see batches once sharing
        # is on. They are sent after the off page was gone, so by the time they have
        # arrived, anything the off page had sent would have arrived before them.
        t.set_enabled(True)
        page = context.new_page()
        open_dashboard(page, base)
        page.click("#bulk-edit")
        telemetry_module(page, "m.flush(true)")  # a live beacon: intercepted
        wait_for(lambda: stored(db_path).get(("ui", "bulk_edit")) == 1, page)
        page.click("#export-csv")
        page.goto(base + "/settings/privacy")  # an unload beacon: only the server sees it
        wait_for(lambda: stored(db_path).get(("ui", "export_csv")) == 1, page)
        context.close()
    # Only the control's batches: the live one always, the unload one sometimes.
    control = ['{"actions":{"bulk_edit":1}}', '{"actions":{"export_csv":1}}']
    assert intercepted in (control[:1], control)
    assert [r for r in server.seen if r[1] == UI_URL] == [("POST", UI_URL)] * 2
    assert stored(db_path) == {
        ("api", "users.list"): 1,
        ("ui", "bulk_edit"): 1,
        ("ui", "export_csv"): 1,
    }


# -- (c) the privacy page -----------------------------------------------------------------


def outbox_status(db_path: Path, **environ: str) -> dict[str, Any]:
    """``outbox --db PATH status --json``, run as the administrator would."""
    result = subprocess.run(
        [sys.executable, "-c", "from outbox.cli import main; main()"]
        + ["--db", str(db_path), "status", "--json"],
        env=child_env(**environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def tab_to(page: Page, element_id: str) -> None:
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the keyboard")


def test_c_the_toggle_works_by_keyboard_persists_and_agrees_with_the_outbox(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=None)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, base, "admin")
        page.goto(base + "/settings/privacy")
        toggle = page.get_by_role("switch", name=TOGGLE_LABEL)
        expect(toggle).not_to_be_checked()
        expect(toggle).to_be_enabled()

        tab_to(page, "helios-share")
        with page.expect_response(lambda r: r.request.method == "PUT") as answer:
            page.keyboard.press("Space")
        assert answer.value.status == 200
        expect(toggle).to_be_checked()
        expect(page.locator("#helios-share-status")).to_have_text(
            "Sharing is on: the organisation turned sharing on."
        )
        d = t.decision()
        assert (d.mode, d.source, d.locked) == ("on", "organization_setting", False)
        status = outbox_status(db_path)
        assert status["mode"] == "on"
        assert status["decided_by"] == {"source": d.source, "locked": False, "reason": d.reason}

        page.reload()
        expect(toggle).to_be_checked()

        t.track_api_call("users.list")  # something unsent, deleted by switching off
        tab_to(page, "helios-share")
        with page.expect_response(lambda r: r.request.method == "PUT") as answer:
            page.keyboard.press("Space")
        assert answer.value.json()["discarded"] == {"events": 1, "heartbeats": 0}
        expect(toggle).not_to_be_checked()
        expect(page.locator("#helios-share-status")).to_contain_text("Deleted 1 unsent event")
        assert t.decision().mode == "off"
        assert (
            outbox_status(db_path)["decided_by"]["reason"] == "the organisation turned sharing off"
        )
        page.reload()
        expect(toggle).not_to_be_checked()
        assert stored(db_path) == {}
        context.close()


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK"),
        ({"HELIOS_TELEMETRY_ENABLED": "false"}, "HELIOS_TELEMETRY_ENABLED"),
    ],
)
def test_c_locked_the_toggle_is_disabled_and_the_page_says_why(
    browser: Browser,
    make_telemetry: Callable[..., Telemetry],
    db_path: Path,
    tmp_path: Path,
    environ: dict[str, str],
    variable: str,
) -> None:
    make_telemetry(enabled=None).set_enabled(True)  # the organisation said yes ...
    t = make_telemetry(enabled=None, environ=environ)  # ... the environment says no
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, base, "admin")  # even an administrator cannot switch a locked setting
        page.goto(base + "/settings/privacy")
        toggle = page.get_by_role("switch", name=TOGGLE_LABEL)
        expect(toggle).to_be_disabled()
        expect(toggle).not_to_be_checked()
        lock = page.locator("#helios-share-lock")
        expect(lock).to_be_visible()
        expect(lock).to_contain_text(f"This setting is locked: {variable} is")
        # A disabled control is skipped by the keyboard, and clicking it does nothing.
        with pytest.raises(AssertionError):
            tab_to(page, "helios-share")
        toggle.click(force=True)
        expect(toggle).not_to_be_checked()
        page.screenshot(path=tmp_path / "locked.png", full_page=True)
        context.close()
    assert (tmp_path / "locked.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert t.decision().locked and t.decision().source == variable
    status = outbox_status(db_path, **environ)
    assert status["mode"] == "off"
    assert status["decided_by"]["source"] == variable and status["decided_by"]["locked"]


# -- (e) who may switch, and what an administrator sees before deciding -----------------------


def test_e_a_normal_user_cannot_switch_and_is_told_why(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=None)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, base, "user")
        page.goto(base + "/settings/privacy")
        toggle = page.get_by_role("switch", name=TOGGLE_LABEL)
        expect(toggle).to_be_disabled()
        expect(page.locator("#helios-share-note")).to_have_text(
            "Only an administrator can change this setting."
        )
        expect(page.locator("#helios-what-is-sent")).to_have_count(0)
        # Even a page script that enables the switch and flips it gets the real reason.
        page.evaluate("document.getElementById('helios-share').disabled = false")
        with page.expect_response(lambda r: r.request.method == "PUT") as answer:
            toggle.click()  # not check(): the page turns it back as soon as the 403 arrives
        assert answer.value.status == 403
        assert answer.value.json() == {
            "error": "forbidden",
            "detail": "not an administrator",
            "reason": "not_admin",
        }
        expect(page.locator("#helios-share-error")).to_have_text(
            "The setting was not changed: not an administrator."
        )
        expect(toggle).not_to_be_checked()
        # Signed out: the same.
        open_dashboard(page, base)
        with page.expect_navigation():
            page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        page.goto(base + "/settings/privacy")
        expect(page.get_by_role("switch", name=TOGGLE_LABEL)).to_be_disabled()
        context.close()
    d = t.decision()
    assert (d.mode, d.source) == ("off", "default")  # nothing changed
    assert not db_path.exists()


def test_e_an_administrator_sees_exactly_what_would_be_sent_and_what_was(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path, tmp_path: Path
) -> None:
    t = make_telemetry(enabled=None)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, base, "admin")
        page.goto(base + "/settings/privacy")
        expect(page.locator("#helios-next-heartbeat-none")).to_have_text(
            "Nothing has been collected yet."
        )
        page.get_by_role("switch", name=TOGGLE_LABEL).check()
        expect(page.locator("#helios-share-status")).to_contain_text("Sharing is on")
        t.track_command("sync", 2)
        deliver_to_a_collector(db_path, tmp_path)  # one heartbeat sent, by the real worker
        t.track_api_call("groups.list")
        page.reload()
        shown = json.loads(page.locator("#helios-next-heartbeat").inner_text())
        assert shown["api_usage"] == {"groups.list": 1} and shown["heartbeat_id"] is None
        preview = t.preview()
        assert preview is not None
        assert {k: v for k, v in shown.items() if k != "period_end"} == {
            k: v for k, v in preview.items() if k != "period_end"
        }
        last = t.last_sent()
        assert last is not None and last.settled_at is not None
        assert json.loads(page.locator("#helios-last-heartbeat").inner_text()) == last.counts()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last.settled_at))
        expect(page.locator("#helios-last-sent-date")).to_have_text(
            f"The last heartbeat sent, on {when}:"
        )
        context.close()


def test_e_a_missing_worker_is_shown_on_the_page(
    browser: Browser, make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    t = make_telemetry(enabled=True)
    t.track_api_call("users.list")
    clock.advance(3 * 3600)
    health = t.worker()
    assert health is not None and health.message is not None
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/settings/privacy")
        expect(page.locator("#helios-worker")).to_have_text(health.message)
        expect(page.locator("#helios-worker")).to_contain_text("outbox-worker --once")
        # switched off by an administrator: nothing waits to be sent, the warning goes
        sign_in(page, base, "admin")
        page.goto(base + "/settings/privacy")
        page.get_by_role("switch", name=TOGGLE_LABEL).uncheck()
        expect(page.locator("#helios-share-status")).to_contain_text("Sharing is off")
        expect(page.locator("#helios-worker")).to_be_hidden()
        context.close()


# -- (d) the badge ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled", "shown"),
    [(True, True), ("local", False), (None, False)],
    ids=["on", "local", "off"],
)
def test_d_the_badge_appears_only_while_sharing(
    browser: Browser,
    make_telemetry: Callable[..., Telemetry],
    enabled: object,
    shown: bool,
) -> None:
    t = make_telemetry(enabled=enabled)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        open_dashboard(page, base)
        badge = page.get_by_role("link", name=BADGE_TEXT)
        if shown:
            expect(badge).to_be_visible()
            expect(badge).to_have_attribute("href", "https://helios.gridworx.io/insights")
        else:
            expect(page.locator("helios-telemetry-badge")).to_be_hidden()
            expect(badge).to_have_count(0)
        context.close()


def test_d_turning_sharing_on_shows_the_badge_turning_it_off_hides_it(
    browser: Browser, make_telemetry: Callable[..., Telemetry]
) -> None:
    t = make_telemetry(enabled=None)
    with serve(app_for(t)) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, base, "admin")
        open_dashboard(page, base)
        badge = page.get_by_role("link", name=BADGE_TEXT)
        expect(badge).to_have_count(0)
        page.goto(base + "/settings/privacy")
        page.get_by_role("switch", name=TOGGLE_LABEL).check()
        expect(page.locator("#helios-share-status")).to_contain_text("Sharing is on")
        open_dashboard(page, base)
        expect(badge).to_be_visible()
        page.goto(base + "/settings/privacy")
        page.get_by_role("switch", name=TOGGLE_LABEL).uncheck()
        expect(page.locator("#helios-share-status")).to_contain_text("Sharing is off")
        open_dashboard(page, base)
        expect(badge).to_have_count(0)
        context.close()


# -- without the <html> attributes, the module asks the settings API -------------------------


BARE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<script type="module">
  import { ready, trackUIAction } from "/telemetry/static/telemetry.js";
  trackUIAction("bulk_edit");  // before the state is known: held in memory
  ready.then((mode) => { document.body.dataset.mode = mode; });
</script></head><body></body></html>"""


@pytest.mark.parametrize("enabled", [True, None], ids=["on", "off"])
def test_without_attributes_the_state_comes_from_the_settings_api(
    browser: Browser, make_telemetry: Callable[..., Telemetry], db_path: Path, enabled: object
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from outbox.web import telemetry_routes

    t = make_telemetry(enabled=enabled)

    async def bare(request: object) -> HTMLResponse:
        return HTMLResponse(BARE_PAGE)

    server = Recording(
        Starlette(
            routes=[Route("/", bare), *telemetry_routes(telemetry=t, ui_actions=["bulk_edit"])]
        )
    )
    with serve(server) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/")
        mode = "on" if enabled else "off"
        page.wait_for_selector(f"body[data-mode={mode}]", state="attached")
        assert telemetry_module(page, "m.pendingActions()") == (1 if enabled else 0)
        page.close()
        if enabled:
            wait_for(lambda: stored(db_path) == {("ui", "bulk_edit"): 1})
        context.close()
    asked = [r for r in server.seen if r[1] == "/api/settings/telemetry"]
    assert asked == [("GET", "/api/settings/telemetry")]  # once, not per action
    sent = [r for r in server.seen if r[1] == UI_URL]
    assert sent == ([("POST", UI_URL)] if enabled else [])
    assert stored(db_path) == ({("ui", "bulk_edit"): 1} if enabled else {})
