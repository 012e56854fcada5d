"""End to end in real Chromium for the Flask and Django examples, each under gunicorn.

An administrator signs in and switches sharing on, clicks the three UI actions and
leaves the page; the real ``outbox-worker --once`` delivers to the real collector,
which shows exactly those counts. A normal user cannot switch. Under Django every
write carries the CSRF token (``telemetry.js`` sends it by ``fetch`` with
``keepalive``, since a beacon cannot carry a header).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from outbox import Telemetry
from outbox.web import TOGGLE_LABEL
from tests.web.conftest import drops, stored
from tests.web.servers import Server, running
from tests.web.test_browser import (
    CLICKED,
    browser,
    click_the_buttons,
    deliver_to_a_collector,
    open_dashboard,
    sign_in,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

__all__ = ["browser"]  # the module's Chromium, shared with test_browser.py

EXAMPLES = {
    "flask": "examples.flask_app:create_app()",
    "django": "examples.django_app.wsgi",
}


@pytest.fixture(params=list(EXAMPLES))
def example(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Server]:
    adapter = str(request.param)
    with running(
        adapter,
        db_path,
        target=EXAMPLES[adapter],
        workers=2,
        threads=2,
        health="/signin",
        HELIOS_EXAMPLE_SECRET="the same session key in every worker",
    ) as server:
        yield server


def switch(page: Page, base: str, on: bool) -> None:
    page.goto(base + "/settings/privacy")
    toggle = page.get_by_role("switch", name=TOGGLE_LABEL)
    expect(toggle).to_be_enabled()
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        toggle.click()
    assert answer.value.status == 200, answer.value.text()
    expect(toggle).to_be_checked(checked=on)
    expect(page.locator("#helios-share-status")).to_contain_text(
        "Sharing is on" if on else "Sharing is off"
    )


def test_an_administrator_shares_and_the_collector_gets_exactly_the_clicks(
    browser: Browser, example: Server, db_path: Path, tmp_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, example.url, "admin")
    switch(page, example.url, on=True)
    open_dashboard(page, example.url)
    click_the_buttons(page)
    # Leaving the page sends what was counted. Leave by going to another page: on a busy
    # machine the last batch of a closed page once did not arrive within 20 s (closing a
    # page is covered by test_browser.py).
    page.goto(example.url + "/settings/privacy")
    wait_for(
        lambda: stored(db_path) == CLICKED,
        show=lambda: {"stored": stored(db_path), "dropped": drops(db_path)},
    )
    context.close()
    example.stop()
    assert stored(db_path) == CLICKED
    outbox_worker = [str(Path(sys.executable).parent / "outbox-worker")]  # the installed script
    assert deliver_to_a_collector(db_path, tmp_path, outbox_worker) == CLICKED


def test_a_normal_user_cannot_switch_and_is_told_why(
    browser: Browser, example: Server, db_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, example.url, "user")
    page.goto(example.url + "/settings/privacy")
    toggle = page.get_by_role("switch", name=TOGGLE_LABEL)
    expect(toggle).to_be_disabled()
    expect(page.locator("#helios-share-note")).to_have_text(
        "Only an administrator can change this setting."
    )
    expect(page.locator("#helios-what-is-sent")).to_have_count(0)
    page.evaluate("document.getElementById('helios-share').disabled = false")
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        toggle.click()  # the page turns it back as soon as the 403 arrives
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
    context.close()
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    assert (t.decision().mode, t.decision().source) == ("off", "default")
    t.close()
