"""The payload builder on literal rows, and the worker's seal path end to end on literal events."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date

from outbox import heartbeats
from outbox.contract import encode
from outbox.payload import Aggregate, build_payload
from tests.support.clock import T0, FakeClock
from worker.loop import Worker

DAY = 86400
D0 = date(2026, 11, 25)  # the UTC day of T0
D1 = date(2026, 11, 26)


def test_build_payload_on_literal_aggregates() -> None:
    rows = [
        Aggregate("api", "users.list", D0, 12),
        Aggregate("api", "groups.get", D0, 3),
        Aggregate("api", "users.list", D1, 5),
        Aggregate("command", "sync", D1, 1),
        Aggregate("ui", "bulk_edit", D0, 2),
    ]
    p = build_payload(
        rows,
        dropped={"invalid_name": 4, "storage_error": 0, "over_capacity": 0, "unknown_name": 0},
        heartbeat_id="hb-1",
        instance_id="inst-1",
        sequence=17,
        period_start="2026-11-25T10:00:00Z",
        period_end="2026-11-26T11:00:00Z",
        version="1.4.2",
        edition="community",
    )
    assert p == {
        "schema_version": 1,
        "heartbeat_id": "hb-1",
        "instance_id": "inst-1",
        "sequence": 17,
        "period_start": "2026-11-25T10:00:00Z",
        "period_end": "2026-11-26T11:00:00Z",
        "app": {"version": "1.4.2", "edition": "community"},
        "api_usage": {"groups.get": 3, "users.list": 17},
        "command_usage": {"sync": 1},
        "ui_actions": {"bulk_edit": 2},
        "days": {
            "2026-11-25": {
                "api_usage": {"groups.get": 3, "users.list": 12},
                "command_usage": {},
                "ui_actions": {"bulk_edit": 2},
            },
            "2026-11-26": {
                "api_usage": {"users.list": 5},
                "command_usage": {"sync": 1},
                "ui_actions": {},
            },
        },
        "dropped": {"invalid_name": 4, "storage_error": 0, "over_capacity": 0},
    }
    assert list(p) == [
        "schema_version",
        "heartbeat_id",
        "instance_id",
        "sequence",
        "period_start",
        "period_end",
        "app",
        "api_usage",
        "command_usage",
        "ui_actions",
        "days",
        "dropped",
    ]


def test_the_worker_seals_literal_rows_into_exactly_that_payload(
    conn: sqlite3.Connection, clock: FakeClock, make_worker: Callable[..., Worker]
) -> None:
    conn.executemany(
        "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)",
        [
            ("api", "users.list", 1, T0 - DAY + 5),  # the day before
            ("api", "users.list", 4, T0),
            ("api", "groups.get", 3, T0 + 60),
            ("command", "sync", 1, T0 + 120),
            ("ui", "bulk_edit", 2, T0 + 180),
        ],
    )
    conn.execute("UPDATE dropped SET pending = 2, total = 2 WHERE reason = 'invalid_name'")
    conn.execute("INSERT INTO meta (key, value) VALUES ('instance_id', 'inst-lit')")
    clock.now = T0 + 3600
    w = make_worker(env_enabled="local")
    s = w.tick(clock.now, force=True)
    hb = heartbeats.get(conn, s.sealed or "")
    assert hb is not None and hb.status == "local"
    expected = {
        "schema_version": 1,
        "heartbeat_id": hb.id,
        "instance_id": "inst-lit",
        "sequence": 1,
        "period_start": "2026-11-24T10:00:05Z",
        "period_end": "2026-11-25T11:00:00Z",
        "app": {"version": "1.4.2", "edition": "community"},
        "api_usage": {"groups.get": 3, "users.list": 5},
        "command_usage": {"sync": 1},
        "ui_actions": {"bulk_edit": 2},
        "days": {
            "2026-11-24": {"api_usage": {"users.list": 1}, "command_usage": {}, "ui_actions": {}},
            "2026-11-25": {
                "api_usage": {"groups.get": 3, "users.list": 4},
                "command_usage": {"sync": 1},
                "ui_actions": {"bulk_edit": 2},
            },
        },
        "dropped": {"invalid_name": 2, "storage_error": 0, "over_capacity": 0},
    }
    assert json.loads(hb.payload) == expected
    assert hb.payload == encode(expected)  # byte for byte what is stored and would be sent
