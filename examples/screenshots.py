"""Take the documentation's screenshots again: every picture in docs/img.

- ``privacy-on.png``, ``privacy-off.png``, ``privacy-locked.png``: the example host app's
  privacy page (``/settings/privacy``), signed in as its administrator, with sharing on,
  off, and locked by ``DO_NOT_TRACK``;
- ``insights.png``: the collector's public dashboard after a month of daily heartbeats
  from a small fleet (the same fleet ``tests/collector/test_browser.py`` checks number by
  number).

Everything runs on 127.0.0.1 in Debian's Chromium through Playwright (never a browser
download; ``scripts/install-system-packages`` installs it), with a fixed clock and fixed
ids, so a picture changes only when the page does. A file is rewritten only when its
bytes differ. ``make docs`` runs this before building the site::

    .venv/bin/python examples/screenshots.py [OUTPUT_DIR]
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from collector import Storage
from collector import create_app as create_collector
from collector.server import serve_in_thread
from outbox import Telemetry
from outbox.contract import bearer, encode
from outbox.payload import Aggregate, build_payload

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    # No DNS at all except loopback: the pages must need nothing from elsewhere.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
#: 2026-11-25 10:00 UTC, the day the pictures show (``tests.support.clock.T0``).
NOW = 1795600800.0
DAY_S = 86_400

# -- the fleet behind the insights dashboard ------------------------------------------------

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


class Clock(Protocol):
    now: float


class FixedClock:
    """A clock that says what it is told (``now``), for the collector and the outboxes."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def secret_of(instance_id: str) -> str:
    """The fleet's instance secrets (an outbox makes a random one; these are made again)."""
    return "docs-" + hashlib.sha256(instance_id.encode()).hexdigest()[:40]


def fleet(url: str, clock: Clock, *, instances: int = 24, days: int = 30) -> list[str]:
    """POST a month of daily heartbeats from a small fleet to the collector at ``url``.

    Seeded, so the same fleet every time: editions, versions, instances that joined
    later, days offline, weekends, a few dropped names. Moves ``clock.now`` through the
    month and puts it back. Returns the instance ids.
    """
    rng = random.Random(3)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(instances)]
    kinds = (("api", API), ("command", COMMANDS), ("ui", UI))
    back = clock.now
    start = back - (days - 1) * DAY_S
    last = datetime.fromtimestamp(back, UTC).date()
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
                day = last - timedelta(days=days - 1 - d)
                weekend = (days - 1 - d) % 7 in (2, 3)
                rows = []
                for kind, weights in kinds:
                    for name, w in weights.items():
                        k = int(rng.gauss(w * size * (0.3 if weekend else 1), w * 0.3))
                        if k > 0:
                            rows.append(Aggregate(kind, name, day, k))  # type: ignore[arg-type]
                drops = {"invalid_name": rng.randint(1, 3)} if rng.random() < 0.05 else {}
                clock.now = start + d * DAY_S + 3600
                payload = build_payload(
                    rows,
                    dropped=drops,
                    heartbeat_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    instance_id=iid,
                    sequence=sequence,
                    period_start=f"{day}T00:00:00Z",
                    period_end=f"{day}T23:00:00Z",
                    version=version,
                    edition=edition,
                )
                r = http.post(
                    "/api/instances/heartbeat",
                    content=encode(payload),
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": bearer(secret_of(iid)),
                    },
                )
                if r.status_code != 200:
                    raise RuntimeError(f"the collector refused a heartbeat: {r.text}")
    clock.now = back
    return ids


# -- taking the pictures ---------------------------------------------------------------------


def ids_from(seed: str) -> Callable[[], str]:
    """Fixed ids for an outbox (its instance id and heartbeat ids appear on the page)."""
    rng = random.Random(seed)
    return lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))


def privacy_pages(folder: Path) -> dict[str, Telemetry]:
    clock = FixedClock()
    states = {
        name: Telemetry(
            db_path=folder / f"{name}.db", environ=env, clock=clock, new_id=ids_from(name)
        )
        for name, env in (("on", {}), ("off", {}), ("locked", {"DO_NOT_TRACK": "1"}))
    }
    states["on"].set_enabled(True)  # as an administrator would, on this page
    for name, count in (("users.list", 12), ("groups.get", 3)):
        states["on"].track_api_call(name, count)
    states["on"].track_command("sync")
    states["on"].track_ui_action("bulk_edit", 2)
    return states


def save(page: Any, path: Path) -> str:
    """Write the page's picture to ``path`` unless the file already holds these bytes."""
    png: bytes = page.screenshot(full_page=True)
    if path.exists() and path.read_bytes() == png:
        return f"{path} (unchanged)"
    path.write_bytes(png)
    return f"{path} (written)"


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else ROOT / "docs" / "img"
    if not CHROMIUM.exists():
        print(
            f"screenshots: {CHROMIUM} is missing; install Debian's Chromium with "
            "scripts/install-system-packages (or: apt-get install chromium)",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(ROOT))
    from examples.host_app import create_app

    # The example app is served on 127.0.0.1 only: its warning that no origins were
    # declared (so sharing can be switched only through a loopback address) is expected.
    logging.getLogger("outbox.web").setLevel(logging.ERROR)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helios-shots-") as tmp, chromium() as browser:
        folder = Path(tmp)
        for state, telemetry in privacy_pages(folder).items():
            with serve_in_thread(create_app(telemetry)) as server:
                context = browser.new_context(viewport={"width": 900, "height": 760})
                # Sign in with the form's request alone: the dashboard it leads to would
                # count its own API calls, and the picture would depend on when they land.
                signed = context.request.post(
                    server.url + "/signin",
                    form={"username": "admin", "password": "admin-password"},
                    headers={"Origin": server.url},
                    max_redirects=0,
                )
                if signed.status != 303:
                    raise RuntimeError(f"signing in as the administrator failed: {signed.status}")
                page = context.new_page()
                page.goto(server.url + "/settings/privacy")
                page.wait_for_load_state("networkidle")
                print(save(page, out / f"privacy-{state}.png"))
                context.close()
        clock = FixedClock()
        storage = Storage(folder / "collector.db")
        try:
            with serve_in_thread(create_collector(storage, clock=clock)) as running:
                fleet(running.url, clock)
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(f"{running.url}/insights?days=30")
                print(save(page, out / "insights.png"))
                page.close()
        finally:
            storage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
