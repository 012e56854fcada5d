"""Validation of schema version 1, as a pure function: every field, every rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.errors import PayloadError
from collector.validate import Limits, check_idempotency_key, parse
from outbox.contract import encode, is_valid_name, sha256_hex
from outbox.payload import Aggregate, build_payload
from tests.collector.payloads import DAY, IID, MIX, body, dumps, payload

Doc = dict[str, Any]


def test_a_payload_built_by_the_outbox_parses_into_its_day_rows() -> None:
    b = body(sequence=17, dropped={"invalid_name": 2})
    hb = parse(b)
    assert hb.instance_id == IID
    assert hb.sequence == 17
    assert hb.payload_sha256 == sha256_hex(b)
    assert hb.size == len(b)
    assert (hb.version, hb.edition) == ("1.4.2", "community")
    assert hb.period_start == 1795510800  # 2026-11-24T09:00:00Z
    assert hb.period_end == 1795600800
    assert sorted(hb.rows) == sorted((d, k, n, c) for (k, n, d), c in MIX.items())
    assert dict(hb.dropped) == {"invalid_name": 2, "storage_error": 0, "over_capacity": 0}


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        target = doc
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


def _both(kind_key: str, name: str, value: Any, day: str = DAY) -> Callable[[Doc], None]:
    """Put the same (bad) count at the top level and in one day."""

    def mutate(doc: Doc) -> None:
        doc[kind_key][name] = value
        doc["days"][day][kind_key][name] = value

    return mutate


def _rename_day(new: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["days"][new] = doc["days"].pop(DAY)

    return mutate


CASES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown top-level field", _set("client_ip", "10.0.0.1"), "client_ip"),
    ("heartbeat_id missing", _delete("heartbeat_id"), "heartbeat_id"),
    ("heartbeat_id not a UUID", _set("heartbeat_id", "hb-1"), "heartbeat_id"),
    (
        "heartbeat_id uppercase",
        _set("heartbeat_id", "0B4F6C1E-8C1D-4E4F-9A51-2D3C4B5A6F70"),
        "heartbeat_id",
    ),
    ("heartbeat_id number", _set("heartbeat_id", 12), "heartbeat_id"),
    (
        "instance_id braces",
        _set("instance_id", "{5d0c0000-0000-4000-8000-000000000001}"),
        "instance_id",
    ),
    ("instance_id null", _set("instance_id", None), "instance_id"),
    ("sequence zero", _set("sequence", 0), "sequence"),
    ("sequence negative", _set("sequence", -3), "sequence"),
    ("sequence string", _set("sequence", "17"), "sequence"),
    ("sequence float", _set("sequence", 17.0), "sequence"),
    ("sequence bool", _set("sequence", True), "sequence"),
    ("sequence 2**63", _set("sequence", 2**63), "sequence"),
    ("period_start not UTC", _set("period_start", "2026-11-25T10:00:00+02:00"), "period_start"),
    ("period_start no zone", _set("period_start", "2026-11-25T10:00:00"), "period_start"),
    ("period_end date only", _set("period_end", "2026-11-25"), "period_end"),
    ("period_end 30 February", _set("period_end", "2026-02-30T10:00:00Z"), "period_end"),
    ("period_end hour 24", _set("period_end", "2026-11-25T24:00:00Z"), "period_end"),
    ("period_end unix seconds", _set("period_end", 1795600800), "period_end"),
    ("app not object", _set("app", "1.4.2"), "app"),
    ("app.version missing", _delete("app/version"), "app.version"),
    ("app.version empty", _set("app/version", ""), "app.version"),
    ("app.version newline", _set("app/version", "1.4\n2"), "app.version"),
    ("app.version non-ASCII", _set("app/version", "1.4.2-β"), "app.version"),
    ("app.version 65 chars", _set("app/version", "1" * 65), "app.version"),
    ("app.edition unknown", _set("app/edition", "enterprise"), "app.edition"),
    ("app.edition capitalised", _set("app/edition", "Community"), "app.edition"),
    ("app extra field", _set("app/hostname", "db1"), "app.hostname"),
    ("api_usage array", _set("api_usage", []), "api_usage"),
    ("count zero", _both("api_usage", "users.list", 0), "api_usage.users.list"),
    ("count negative", _both("command_usage", "sync", -1), "command_usage.sync"),
    ("count bool", _both("ui_actions", "bulk_edit", True), "ui_actions.bulk_edit"),
    ("count float", _both("api_usage", "users.list", 12.0), "api_usage.users.list"),
    ("count string", _both("api_usage", "users.list", "12"), "api_usage.users.list"),
    ("count 2**53", _both("api_usage", "users.list", 2**53), "api_usage.users.list"),
    ("bad name", _both("api_usage", "Users.List", 1), "api_usage.Users.List"),
    ("top-level larger than days", _set("api_usage/users.list", 13), "api_usage.users.list"),
    ("name only at top level", _set("command_usage/deploy", 1), "command_usage.deploy"),
    ("name only in a day", _set(f"days/{DAY}/ui_actions/export_csv", 4), "ui_actions.export_csv"),
    ("days not object", _set("days", []), "days"),
    ("day key not a date", _rename_day("yesterday"), "days.yesterday"),
    ("day key 30 February", _rename_day("2026-02-30"), "days.2026-02-30"),
    ("day key with time", _rename_day("2026-11-25T00:00:00Z"), "days.2026-11-25T00:00:00Z"),
    ("day without a kind", _delete(f"days/{DAY}/command_usage"), f"days.{DAY}.command_usage"),
    ("day with an extra key", _set(f"days/{DAY}/errors", {}), f"days.{DAY}.errors"),
    (
        "day count zero",
        _set(f"days/{DAY}/api_usage/users.list", 0),
        f"days.{DAY}.api_usage.users.list",
    ),
    (
        "day name an email",
        _set(f"days/{DAY}/api_usage/a@b.example", 1),
        f"days.{DAY}.api_usage.a@b.example",
    ),
    ("dropped missing", _delete("dropped"), "dropped"),
    ("dropped reason missing", _delete("dropped/storage_error"), "dropped.storage_error"),
    ("dropped negative", _set("dropped/invalid_name", -1), "dropped.invalid_name"),
    ("dropped bool", _set("dropped/over_capacity", False), "dropped.over_capacity"),
    ("dropped bad reason", _set("dropped/Invalid Name", 1), "dropped.Invalid Name"),
]


@pytest.mark.parametrize(("mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_broken_field_is_422_naming_it(mutate: Callable[[Doc], None], field: str) -> None:
    doc = copy.deepcopy(payload())
    mutate(doc)
    with pytest.raises(PayloadError) as caught:
        parse(dumps(doc))
    assert caught.value.status == 422
    assert caught.value.field == field
    assert caught.value.as_json() == {"error": caught.value.message, "field": field}


def test_an_unknown_drop_reason_is_accepted() -> None:
    doc = payload(dropped={"unknown_name": 3})
    assert parse(dumps(doc)).dropped["unknown_name"] == 3


def test_zero_counts_never_appear_but_all_maps_may_be_empty() -> None:
    hb = parse(body({}))
    assert hb.rows == ()


def test_fractional_seconds_and_plus_zero_offset_are_utc_too() -> None:
    doc = payload(period_start="2026-11-25T10:00:00.250Z", period_end="2026-11-25T11:00:00+00:00")
    hb = parse(dumps(doc))
    assert (hb.period_start, hb.period_end) == (1795600800, 1795604400)


def test_field_echo_is_truncated_for_huge_keys() -> None:
    name = "x" * 10_000
    doc = payload({("api", name, DAY): 1})
    with pytest.raises(PayloadError) as caught:
        parse(dumps(doc))
    assert caught.value.field is not None
    assert len(caught.value.field) < 100
    assert len(caught.value.message) < 400


@pytest.mark.parametrize(
    ("limits", "counts", "field"),
    [
        (
            Limits(max_names_per_kind=3),
            {("api", f"n{i}", DAY): 1 for i in range(4)},
            "api_usage",
        ),
        (
            Limits(max_days=2),
            {("ui", "x", f"2026-11-2{i}"): 1 for i in range(3)},
            "days",
        ),
        (
            Limits(max_day_rows=5),
            {("ui", f"x{i}", f"2026-11-2{i % 2}"): 1 for i in range(6)},
            "days",
        ),
    ],
)
def test_size_limits_are_422(limits: Limits, counts: dict[Any, int], field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(body(counts), limits=limits)
    assert (caught.value.status, caught.value.field) == (422, field)


def test_too_many_drop_reasons_is_422() -> None:
    reasons = {f"r{i}": 1 for i in range(40)}
    with pytest.raises(PayloadError) as caught:
        parse(body(dropped=reasons))
    assert caught.value.field == "dropped"


def test_the_outbox_largest_heartbeat_fits_the_default_limits() -> None:
    # 200 names per kind (the outbox's cap) over 80 days: 48,000 day rows.
    counts = {
        (kind, f"name{n:03d}", f"2026-{9 + d // 30:02d}-{1 + d % 30:02d}"): 1_000_000
        for kind in ("api", "command", "ui")
        for n in range(200)
        for d in range(80)
    }
    b = body(counts)
    assert len(b) < Limits().max_body
    assert len(parse(b).rows) == 48_000


def test_idempotency_key_header() -> None:
    hb = parse(body())
    check_idempotency_key(None, hb)
    check_idempotency_key(hb.heartbeat_id, hb)
    with pytest.raises(PayloadError) as caught:
        check_idempotency_key(hb.heartbeat_id.upper(), hb)
    assert (caught.value.status, caught.value.field) == (422, "Idempotency-Key")


def test_deep_nesting_and_huge_numbers_are_400() -> None:
    for raw in (b"[" * 100_000, b'{"schema_version": ' + b"9" * 5000 + b"}"):
        with pytest.raises(PayloadError) as caught:
            parse(raw)
        assert caught.value.status == 400


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}", fullmatch=True).filter(
    is_valid_name  # the outbox never builds a name that ends like a hostname (a.com)
)
aggregates = st.lists(
    st.builds(
        Aggregate,
        kind=st.sampled_from(["api", "command", "ui"]),
        name=names,
        day=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
        count=st.integers(1, 10**6),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(rows=aggregates, seq=st.integers(1, 2**31 - 1))
def test_every_payload_the_outbox_can_build_is_accepted_and_sums_match(
    rows: list[Aggregate], seq: int
) -> None:
    doc = build_payload(
        rows,
        dropped={},
        heartbeat_id="0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
        instance_id=IID,
        sequence=seq,
        period_start="2026-11-24T09:00:00Z",
        period_end="2026-11-25T10:00:00Z",
        version="1.4.2",
        edition="licensed",
    )
    hb = parse(encode(doc))
    expected: dict[tuple[str, str, str], int] = {}
    for a in rows:  # at most 40 names: the outbox's cap of 200 per kind never cuts
        key = (a.kind, a.name, a.day.isoformat())
        expected[key] = expected.get(key, 0) + a.count
    assert {(kind, name, day): n for day, kind, name, n in hb.rows} == expected
    assert json.loads(encode(doc)) == doc
