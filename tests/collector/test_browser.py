"""The public dashboard in real Chromium (Debian's, driven by Playwright): exact numbers.

``HELIOS_UPDATE_SCREENSHOTS=1`` also writes the README's picture, docs/img/insights.png.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import Storage, create_app
from collector.dashboard import percent
from collector.server import serve_in_thread
from tests.collector.payloads import auth, body
from tests.support.clock import T0, FakeClock

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    # No DNS at all except loopback: the page must need nothing from elsewhere.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
REPO = Path(__file__).resolve().parents[2]
DAY_S = 86_400

API = {
    "users.list": 60,
    "users.get": 35,
    "groups.list": 20,
    "users.update": 12,
    "groups.members.list": 9,
    "audit.list": 6,
    "roles.list": 5,
    "users.create": 4,
    "devices.list": 3,
    "licenses.get": 2,
    "settings.update": 1,
}
COMMANDS = {"sync": 12, "export": 5, "users.import": 3, "deploy": 2, "backup": 1}
UI = {"column_sort": 20, "export_csv": 9, "bulk_edit": 7, "filter.save": 4, "dark_mode": 1}


def fleet(url: str, clock: FakeClock, *, instances: int = 24, days: int = 30) -> list[str]:
    """A month of daily heartbeats from a small fleet; returns the instance ids."""
    rng = random.Random(3)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(instances)]
    kinds = (("api", API), ("command", COMMANDS), ("ui", UI))
    start = clock.now - (days - 1) * DAY_S
    with httpx.Client(base_url=url, trust_env=False) as http:
        for n, iid in enumerate(ids):
            edition = "licensed" if n % 4 == 0 else "community"
            version = ["1.5.1", "1.5.1", "1.5.1", "1.5.0", "1.5.0", "1.4.2"][n % 6]
            sequence = 0
            size = rng.uniform(0.3, 3.0)
            first_day = rng.randrange(days // 2) if n % 5 == 0 else 0  # some joined later
            for d in range(first_day, days):
                if rng.random() < 0.08:
                    continue  # offline that day
                sequence += 1
                day = (date(2026, 11, 25) - timedelta(days=days - 1 - d)).isoformat()
                weekend = (days - 1 - d) % 7 in (2, 3)
                counts = {}
                for kind, weights in kinds:
                    for name, w in weights.items():
                        k = int(rng.gauss(w * size * (0.3 if weekend else 1), w * 0.3))
                        if k > 0:
                            counts[(kind, name, day)] = k
                drops = {"invalid_name": rng.randint(1, 3)} if rng.random() < 0.05 else {}
                clock.now = start + d * DAY_S + 3600
                r = http.post(
                    "/api/instances/heartbeat",
                    content=body(
                        counts,
                        instance_id=iid,
                        sequence=sequence,
                        dropped=drops,
                        edition=edition,
                        version=version,
                        period_start=f"{day}T00:00:00Z",
                        period_end=f"{day}T23:00:00Z",
                    ),
                    headers={"Content-Type": "application/json", **auth(iid)},
                )
                assert r.status_code == 200, r.text
    clock.now = T0
    return ids


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
    if os.environ.get("HELIOS_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPO / "docs" / "img" / "insights.png"), full_page=True)

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
