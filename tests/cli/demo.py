"""Build the demo outbox of the README's ``outbox`` transcript.

    python -m tests.cli.demo demo        # creates demo/telemetry.db

About a day of usage, as the worker leaves it: heartbeat 1 sent, heartbeat 2
in flight after a 503, and new counts pending (one refused name among them).
Times are relative to now, anchored at the last UTC noon at least three hours
ago, so the outputs have the same shape whenever it runs.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from outbox import Telemetry, consent, db, heartbeats, store
from outbox.contract import Kind
from outbox.store import Meta

INSTANCE = "5d0c6b0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
FIRST = "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70"
SECOND = "7e2d9a43-51b8-4c0f-a3e6-90d1c2b3a4f5"

DAY1: list[tuple[Kind, str, int]] = [
    ("api", "users.list", 40),
    ("api", "groups.get", 9),
    ("command", "sync", 3),
    ("ui", "bulk_edit", 5),
]
DAY2: list[tuple[Kind, str, int]] = [
    ("api", "users.list", 25),
    ("api", "users.update", 4),
    ("command", "deploy", 1),
    ("ui", "export_csv", 2),
]
PENDING: list[tuple[Kind, str, int]] = [
    ("api", "users.list", 7),
    ("command", "sync", 1),
    ("ui", "column_sort", 3),
    ("ui", "bob@example.com", 1),  # refused: counted as dropped.invalid_name
]


def anchor(now: float) -> int:
    """The latest UTC noon at least three hours before ``now``."""
    t = int(now) - 3 * 3600
    noon = t - t % 86400 + 12 * 3600
    return noon if noon <= t else noon - 86400


def _seal_and_send(conn: sqlite3.Connection, heartbeat_id: str, *, at: int, sent: int) -> None:
    sealed = heartbeats.commit_seal(
        conn,
        heartbeats.plan_seal(conn),
        heartbeat_id=heartbeat_id,
        now=at,
        version="1.4.2",
        edition="community",
    )
    assert sealed is not None
    receipt = {"status": "accepted", "payload_sha256": sealed.payload_sha256}
    heartbeats.settle(conn, heartbeat_id, status="sent", now=sent, attempts=1, receipt=receipt)


def build(path: Path, now: float) -> None:
    noon = anchor(now)
    clock = [float(noon - 86400)]
    t = Telemetry(
        db_path=path, enabled=True, environ={}, clock=lambda: clock[0], new_id=lambda: INSTANCE
    )
    conn = db.connect(path)
    try:
        consent.switch(conn, True, now=noon - 86400)
        assert t.instance_id == INSTANCE
        for kind, name, count in DAY1:
            t.track(kind, name, count)
        _seal_and_send(conn, FIRST, at=noon - 82800, sent=noon - 82798)
        clock[0] = noon - 7200
        for kind, name, count in DAY2:
            t.track(kind, name, count)
        sealed = heartbeats.commit_seal(
            conn,
            heartbeats.plan_seal(conn),
            heartbeat_id=SECOND,
            now=noon,
            version="1.4.2",
            edition="community",
        )
        assert sealed is not None
        heartbeats.record_attempt(conn, SECOND, now=noon + 1, error="HTTP 503 Service Unavailable")
        clock[0] = noon + 3600
        for kind, name, count in PENDING:
            t.track(kind, name, count)
        store.put(conn, Meta.NEXT_DUE_AT, noon + 86400 + 300)
        store.put(conn, Meta.WORKER_SEEN_AT, noon + 3600)
        conn.execute(
            "INSERT OR REPLACE INTO worker_lease (id, owner, pid, acquired_at, expires_at) "
            "VALUES (1, 'helios-1:4242:demo', 4242, ?, ?)",
            (noon - 86400 - 300, noon + 600),
        )
    finally:
        conn.close()
        t.close()


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "demo")
    build(folder / "telemetry.db", time.time())
    print(f"demo outbox: {folder / 'telemetry.db'}")
