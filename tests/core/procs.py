"""Small programs the process tests run as real subprocesses: ``python -m tests.core.procs CMD``."""

from __future__ import annotations

import json
import sys
import time

from outbox import Telemetry


def track(path: str, n: int, kind: str, name: str) -> int:
    """Track ``n`` events; print how many track calls returned False (must be 0)."""
    t = Telemetry(db_path=path, enabled=True, environ={})
    refused = sum(1 for _ in range(n) if not t.track(kind, name))  # type: ignore[arg-type]
    print(json.dumps({"refused": refused, "unstored": t.unstored, "error": t.last_error}))
    return 0


def instance_id(path: str, start_at: float) -> int:
    """Wait until ``start_at`` (so that every process starts at once), then get-or-create."""
    t = Telemetry(db_path=path, enabled=True, environ={})
    while time.time() < start_at:
        pass
    print(t.instance_id)
    return 0


def ack_then_wait(path: str) -> int:
    """Track one event, say so, then wait to be killed."""
    t = Telemetry(db_path=path, enabled=True, environ={})
    ok = t.track_command("sync")
    print("tracked" if ok else f"refused {t.last_error}", flush=True)
    time.sleep(60)
    return 1


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "track":
        sys.exit(track(args[0], int(args[1]), args[2], args[3]))
    if cmd == "instance_id":
        sys.exit(instance_id(args[0], float(args[1])))
    if cmd == "ack_then_wait":
        sys.exit(ack_then_wait(args[0]))
    sys.exit(f"unknown command {cmd}")
