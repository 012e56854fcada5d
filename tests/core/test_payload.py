"""The payload builder on literal rows: no database, no clock."""

from __future__ import annotations

import json
from datetime import date

from outbox.contract import day_of, encode, iso_utc, sha256_hex
from outbox.payload import Aggregate, build_payload, cap_names
from tests.support.clock import T0

ROWS = [
    Aggregate("api", "users.list", date(2026, 11, 24), 5),
    Aggregate("api", "users.list", date(2026, 11, 25), 7),
    Aggregate("api", "groups.get", date(2026, 11, 25), 3),
    Aggregate("command", "sync", date(2026, 11, 24), 1),
    Aggregate("ui", "bulk_edit", date(2026, 11, 25), 2),
]


def build(rows=ROWS, **kw):
    args = dict(
        dropped={"invalid_name": 2, "storage_error": 0, "over_capacity": 0, "unknown_name": 0},
        heartbeat_id="0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
        instance_id="5d0c2f6a-3b1e-4c8d-9f7a-6e5d4c3b2a10",
        sequence=17,
        period_start="2026-11-24T08:00:00Z",
        period_end="2026-11-25T11:00:00Z",
        version="1.4.2",
        edition="community",
    )
    args.update(kw)
    return build_payload(rows, **args)


def test_payload_on_literal_rows_is_the_contract() -> None:
    assert build() == {
        "schema_version": 1,
        "heartbeat_id": "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
        "instance_id": "5d0c2f6a-3b1e-4c8d-9f7a-6e5d4c3b2a10",
        "sequence": 17,
        "period_start": "2026-11-24T08:00:00Z",
        "period_end": "2026-11-25T11:00:00Z",
        "app": {"version": "1.4.2", "edition": "community"},
        "api_usage": {"groups.get": 3, "users.list": 12},
        "command_usage": {"sync": 1},
        "ui_actions": {"bulk_edit": 2},
        "days": {
            "2026-11-24": {
                "api_usage": {"users.list": 5},
                "command_usage": {"sync": 1},
                "ui_actions": {},
            },
            "2026-11-25": {
                "api_usage": {"groups.get": 3, "users.list": 7},
                "command_usage": {},
                "ui_actions": {"bulk_edit": 2},
            },
        },
        "dropped": {"invalid_name": 2, "storage_error": 0, "over_capacity": 0},
    }


def test_top_level_maps_are_the_sums_of_days() -> None:
    p = build()
    for key in ("api_usage", "command_usage", "ui_actions"):
        summed: dict[str, int] = {}
        for per in p["days"].values():
            for name, n in per[key].items():
                summed[name] = summed.get(name, 0) + n
        assert summed == p[key]


def test_extra_drop_reasons_appear_only_when_non_zero() -> None:
    p = build(dropped={"unknown_name": 4})
    assert p["dropped"] == {
        "invalid_name": 0,
        "storage_error": 0,
        "over_capacity": 0,
        "unknown_name": 4,
    }


def test_encoding_is_compact_deterministic_ascii() -> None:
    body = encode(build())
    assert body == encode(build())
    assert b" " not in body and body.isascii()
    assert json.loads(body) == build()
    assert sha256_hex(body) == sha256_hex(encode(build()))
    assert body.startswith(b'{"schema_version":1,"heartbeat_id":')


def test_cap_names_keeps_the_most_used_ties_by_name() -> None:
    rows = [
        Aggregate("ui", n, date(2026, 11, 25), c)
        for n, c in [("b", 5), ("a", 5), ("c", 9), ("d", 1)]
    ]
    kept, cut = cap_names(rows, cap=2)
    assert sorted(a.name for a in kept) == ["a", "c"]
    assert cut == 6
    assert build(rows, name_cap=2)["dropped"]["over_capacity"] == 6


def test_time_helpers() -> None:
    assert iso_utc(T0) == "2026-11-25T10:00:00Z"
    assert day_of(T0) == date(2026, 11, 25)
    assert day_of(T0 - 10 * 3600 - 1) == date(2026, 11, 24)
