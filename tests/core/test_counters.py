"""Counters are derived from the rows: exact per kind and name, through compaction and seals."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbox import Telemetry, db, heartbeats, maintenance, store
from tests.support.clock import T0, FakeClock

NAMES = ["users.list", "users.get", "groups.get", "sync", "bulk_edit"]
KINDS = ["api", "command", "ui"]

track_op = st.tuples(
    st.just("track"),
    st.sampled_from(KINDS),
    st.sampled_from(NAMES),
    st.integers(1, 5),
    st.integers(0, 3 * 86400),  # seconds to advance the clock: events span several days
)
compact_op = st.tuples(st.just("compact"), st.integers(1, 7))  # chunk size: tiny on purpose
seal_op = st.tuples(st.just("seal"))


def _pending(conn) -> Counter[tuple[str, str]]:
    return Counter({(c.kind, c.name): c.count for c in store.pending_counters(conn)})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.one_of(track_op, compact_op, seal_op), max_size=80))
def test_any_sequence_of_track_compact_seal_matches_a_counter(tmp_path_factory, ops) -> None:
    path: Path = tmp_path_factory.mktemp("prop") / "t.db"
    clock = FakeClock(T0)
    t = Telemetry(db_path=path, enabled=True, environ={}, clock=clock)
    conn = db.connect(path)
    expected_pending: Counter[tuple[str, str]] = Counter()
    expected_days: Counter[tuple[str, str, str]] = Counter()
    sealed: Counter[tuple[str, str]] = Counter()
    seq = 0
    try:
        for op in ops:
            if op[0] == "track":
                _, kind, name, count, advance = op
                clock.advance(advance)
                assert t.track(kind, name, count) is True
                expected_pending[(kind, name)] += count
                day = datetime.fromtimestamp(int(clock.now), UTC).date().isoformat()
                expected_days[(kind, name, day)] += count
            elif op[0] == "compact":
                maintenance.compact(conn, chunk=op[1])
            else:
                plan = heartbeats.plan_seal(conn)
                seq += 1
                hb = heartbeats.commit_seal(
                    conn,
                    plan,
                    heartbeat_id=f"hb-{seq}",
                    now=int(clock.now),
                    version="1",
                    edition="community",
                )
                if hb is None:
                    assert not expected_pending
                    continue
                payload = json.loads(hb.payload)
                got = Counter()
                for kind, key in (
                    ("api", "api_usage"),
                    ("command", "command_usage"),
                    ("ui", "ui_actions"),
                ):
                    for name, n in payload[key].items():
                        got[(kind, name)] += n
                assert got == expected_pending
                days = Counter()
                for day, per in payload["days"].items():
                    for kind, key in (
                        ("api", "api_usage"),
                        ("command", "command_usage"),
                        ("ui", "ui_actions"),
                    ):
                        for name, n in per[key].items():
                            days[(kind, name, day)] += n
                assert days == expected_days
                heartbeats.settle(conn, hb.id, status="sent", now=int(clock.now), attempts=1)
                sealed += expected_pending
                expected_pending.clear()
                expected_days.clear()
            assert _pending(conn) == expected_pending
        assert sum(c.count for c in store.pending_counters(conn)) == sum(expected_pending.values())
    finally:
        conn.close()
        t.close()


def test_counters_per_kind_and_name_are_exact(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(7):
        t.track_api_call("users.list")
    for _ in range(3):
        t.track_api_call("users.get")
    t.track_command("sync", count=5)
    t.track_ui_action("bulk_edit")
    assert [(c.kind, c.name, c.count) for c in store.pending_counters(conn)] == [
        ("api", "users.get", 3),
        ("api", "users.list", 7),
        ("command", "sync", 5),
        ("ui", "bulk_edit", 1),
    ]
    assert [(c.name, c.count) for c in store.pending_counters(conn, kind="api")] == [
        ("users.get", 3),
        ("users.list", 7),
    ]


def test_compaction_folds_per_kind_name_and_day_and_keeps_totals(
    make_telemetry, conn, clock
) -> None:
    t = make_telemetry()
    for _day in range(3):
        for _ in range(50):
            t.track_api_call("users.list")
            t.track_ui_action("bulk_edit")
            clock.advance(60)
        clock.advance(86400)
    before = store.pending_counters(conn)
    result = maintenance.compact(conn, chunk=16)
    assert result.rows_removed == 300 - 6
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 6
    assert store.pending_counters(conn) == before
    assert result.transactions >= 300 // 16  # chunked: no transaction saw more than 16 rows


def test_compaction_leaves_sealed_rows_alone(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(10):
        t.track_api_call("users.list")
    hb = heartbeats.commit_seal(
        conn, heartbeats.plan_seal(conn), heartbeat_id="a", now=T0, version="1", edition="community"
    )
    assert hb is not None
    for _ in range(10):
        t.track_api_call("users.list")
    maintenance.compact(conn)
    rows = conn.execute("SELECT id, count FROM events ORDER BY id").fetchall()
    assert [c for _, c in rows] == [1] * 10 + [10]
    assert json.loads(hb.payload)["api_usage"] == {"users.list": 10}


def test_inflight_counters_come_from_the_frozen_payload(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_command("sync", 4)
    heartbeats.commit_seal(
        conn, heartbeats.plan_seal(conn), heartbeat_id="a", now=T0, version="1", edition="community"
    )
    t.track_command("sync", 1)
    assert [(c.name, c.count) for c in store.inflight_counters(conn)] == [("sync", 4)]
    assert [(c.name, c.count) for c in store.pending_counters(conn)] == [("sync", 1)]


def test_instance_id_is_stable_across_reopen(db_path: Path) -> None:
    first = Telemetry(db_path=db_path, enabled=True, environ={}).instance_id
    again = Telemetry(db_path=db_path, enabled=True, environ={}).instance_id
    assert first == again
    assert len(first) == 36 and first.count("-") == 4
    conn = db.connect(db_path)
    try:
        assert store.instance_id(conn) == first
    finally:
        conn.close()


def test_events_are_stamped_by_the_default_clock_under_freezegun(db_path: Path) -> None:
    from freezegun import freeze_time

    with freeze_time("2026-11-25 23:59:59"):
        t = Telemetry(db_path=db_path, enabled=True, environ={})
        t.track_api_call("users.list")
    with freeze_time("2026-11-26 00:00:00"):
        t.track_api_call("users.list")
    conn = db.connect(db_path)
    try:
        plan = heartbeats.plan_seal(conn)
        assert sorted((a.day.isoformat(), a.count) for a in plan.aggregates) == [
            ("2026-11-25", 1),
            ("2026-11-26", 1),
        ]
    finally:
        conn.close()
        t.close()
