"""The main job on the embedded default: track a realistic mix of usage into a
fresh outbox and show the counters derived from it, and the heartbeat payload
that would be sent."""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

from outbox import Telemetry, api_name, db, heartbeats, store

RELAYED = [
    ("GET", "/users"),
    ("GET", "/users/1042"),
    ("POST", "/users"),
    ("GET", "/groups/7f3e2a10-5b6c-4d7e-8f90-a1b2c3d4e5f6"),
    ("PATCH", "/users/alice@example.com"),
]
COMMANDS = ["sync", "deploy", "export"]
UI = ["bulk_edit", "export_csv", "column_sort"]


def main() -> int:
    folder = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="helios-demo-"))
    )
    path = folder / "telemetry.db"
    rng = random.Random(7)
    t = Telemetry(db_path=path, enabled="local", environ={})
    tracked = 0
    for _ in range(500):
        method, p = rng.choice(RELAYED)
        tracked += t.track_api_call(api_name(method, p))  # type: ignore[arg-type]
    for _ in range(40):
        tracked += t.track_command(rng.choice(COMMANDS))
    for _ in range(120):
        tracked += t.track_ui_action(rng.choice(UI))
    t.track_ui_action("bob@example.com")  # refused and counted, never stored
    conn = db.connect(path)
    print(f"outbox: {path}  ({tracked} events tracked)")
    print(f"{'kind':8} {'name':24} {'pending':>8}")
    for c in store.pending_counters(conn):
        print(f"{c.kind:8} {c.name:24} {c.count:>8}")
    print("\nthe next heartbeat would send:")
    print(
        json.dumps(
            heartbeats.preview(conn, now=int(time.time()), version="demo", edition="community"),
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
