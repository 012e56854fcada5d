"""The public dashboard in real Chromium (Debian's, driven by Playwright): exact numbers.

The fleet is the one whose dashboard ``examples/screenshots.py`` photographs for
docs/img/insights.png (``make docs``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import Storage, create_app
from collector.dashboard import percent
from collector.server import serve_in_thread
from examples.screenshots import fleet
from tests.support.clock import FakeClock

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    # No DNS at all except loopback: the page must need nothing from elsewhere.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield b
        b.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    clock = FakeClock()
    storage = Storage(tmp_path / "collector.db")
    with serve_in_thread(create_app(storage, clock=clock)) as running:
        ids = fleet(running.url, clock)
        yield running.url, ids
    storage.close()


def test_dashboard_shows_the_exact_numbers(
    browser: Any, dashboard: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, ids = dashboard
    doc = httpx.get(f"{url}/api/insights?days=30").json()
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(f"{url}/insights?days=30")

    def text(testid: str) -> str:
        return str(page.get_by_test_id(testid).inner_text())

    assert text("window-days") == "30"
    assert text("active-7d") == f"{doc['instances']['active_7d']:,}"
    assert text("active-30d") == f"{doc['instances']['active_30d']:,}"
    assert text("heartbeats") == f"{doc['heartbeats']['received']:,}"
    for kind in ("api", "command", "ui"):
        assert text(f"total-{kind}") == f"{doc['totals'][kind]:,}"
        rows = page.get_by_test_id(f"top-{kind}-row").all()
        shown = [
            (
                r.locator("td.name").inner_text(),
                r.get_by_test_id(f"top-{kind}-count").inner_text(),
                r.get_by_test_id(f"top-{kind}-instances").inner_text(),
                r.get_by_test_id(f"top-{kind}-share").inner_text(),
            )
            for r in rows
        ]
        assert shown == [
            (t["name"], f"{t['count']:,}", f"{t['instances']:,}", percent(t["share"]))
            for t in doc["top"][kind]
        ]
        assert doc["other"][kind] == 0  # 24 instances: every name has K of them
    assert doc["totals"]["api"] > 100_000  # thousands separators are really exercised
    bars = page.locator('[data-testid="daily-chart"] g')
    assert bars.count() == 30
    last = doc["daily"][-1]
    assert bars.last.locator("title").text_content() == (
        f"{last['day']}: API calls {last['api']:,}, Commands {last['command']:,}, "
        f"UI actions {last['ui']:,}"
    )
    html = page.content()
    for iid in ids:
        assert iid not in html
    assert all(u.startswith(url) for u in requested), requested

    page.screenshot(path=str(tmp_path / "insights.png"), full_page=True)

    page.get_by_role("link", name="7 days").click()
    page.wait_for_url(re.compile(r"days=7$"))
    week = httpx.get(f"{url}/api/insights?days=7").json()
    assert text("window-days") == "7"
    assert text("total-api") == f"{week['totals']['api']:,}"
    assert page.locator('[data-testid="daily-chart"] g').count() == 7
    page.close()


def test_an_empty_dashboard_says_so(browser: Any, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "collector.db")
    with serve_in_thread(create_app(storage, clock=FakeClock())) as running:
        page = browser.new_page()
        page.goto(f"{running.url}/insights")
        assert page.get_by_test_id("total-api").inner_text() == "0"
        assert page.get_by_text("Nothing recorded in this window.").count() == 3
        page.close()
    storage.close()
