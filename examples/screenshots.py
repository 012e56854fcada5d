"""Regenerate the privacy-page screenshots in docs/img (on, off, locked).

Runs the example host app on 127.0.0.1 and photographs /settings/privacy in
Debian's Chromium (``apt-get install chromium``), the same way the browser tests
drive it::

    .venv/bin/python examples/screenshots.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from outbox import Telemetry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_app import create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


def start(telemetry: Telemetry) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(telemetry), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


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
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        for state, telemetry in states.items():
            server, thread, base = start(telemetry)
            try:
                context = browser.new_context(viewport={"width": 900, "height": 760})
                page = context.new_page()
                page.goto(base + "/settings/privacy")
                page.wait_for_load_state("networkidle")
                path = out / f"privacy-{state}.png"
                page.screenshot(path=path, full_page=True)
                context.close()
                print(f"{path}")
            finally:
                server.should_exit = True
                thread.join()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
