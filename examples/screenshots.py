"""Regenerate the privacy-page screenshots in docs/img (on, off, locked).

Runs the example host app on 127.0.0.1, signs in as its administrator and
photographs /settings/privacy in Debian's Chromium (``apt-get install chromium``),
the same way the browser tests drive it::

    .venv/bin/python examples/screenshots.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from collector.server import serve_in_thread
from outbox import Telemetry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_app import create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "docs/img"
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="helios-shots-"))
    states = {
        "on": Telemetry(db_path=folder / "on.db", environ={}),
        "off": Telemetry(db_path=folder / "off.db", environ={}),
        "locked": Telemetry(db_path=folder / "locked.db", environ={"DO_NOT_TRACK": "1"}),
    }
    states["on"].set_enabled(True)  # as an administrator would, on this page
    for name, count in (("users.list", 12), ("groups.get", 3)):
        states["on"].track_api_call(name, count)
    states["on"].track_command("sync")
    states["on"].track_ui_action("bulk_edit", 2)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        for state, telemetry in states.items():
            with serve_in_thread(create_app(telemetry)) as server:
                context = browser.new_context(viewport={"width": 900, "height": 760})
                page = context.new_page()
                page.goto(server.url + "/signin")
                page.fill("#username", "admin")
                page.fill("#password", "admin-password")
                with page.expect_navigation():
                    page.click("#sign-in-submit")
                page.goto(server.url + "/settings/privacy")
                page.wait_for_load_state("networkidle")
                path = out / f"privacy-{state}.png"
                page.screenshot(path=path, full_page=True)
                context.close()
                print(f"{path}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
