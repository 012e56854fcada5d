"""Seal primitives, preview, purge, the size cap, switching off: exact outcomes on real files."""

from __future__ import annotations

import json
import sqlite3

import pytest

from outbox import consent, db, heartbeats, maintenance, store
from outbox.contract import encode
from outbox.store import Meta
from tests.support.clock import T0


def seal(conn: sqlite3.Connection, hb_id: str, now: int = T0, **kw):
    return heartbeats.commit_seal(
        conn,
        heartbeats.plan_seal(conn),
        heartbeat_id=hb_id,
        now=now,
        version="1.4.2",
        edition="community",
        **kw,
    )


def test_preview_is_exactly_what_the_seal_freezes(make_telemetry, conn, clock) -> None:
    t = make_telemetry()
    t.track_api_call("users.list", 3)
    clock.advance(86400)
    t.track_command("sync")
    t.track_ui_action("alice@example.com")  # dropped: invalid_name
    preview = heartbeats.preview(conn, now=T0 + 90000, version="1.4.2", edition="community")
    hb = seal(conn, "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70", now=T0 + 90000)
    assert hb is not None
    frozen = json.loads(hb.payload)
    assert preview["heartbeat_id"] is None
    preview["heartbeat_id"] = hb.id
    preview["instance_id"] = frozen["instance_id"]  # created by the first seal
    assert encode(preview) == hb.payload
    assert frozen == {
        "schema_version": 1,
        "heartbeat_id": "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
        "instance_id": store.instance_id(conn),
        "sequence": 1,
        "period_start": "2026-11-25T10:00:00Z",
        "period_end": "2026-11-26T11:00:00Z",
        "app": {"version": "1.4.2", "edition": "community"},
        "api_usage": {"users.list": 3},
        "command_usage": {"sync": 1},
        "ui_actions": {},
        "days": {
            "2026-11-25": {"api_usage": {"users.list": 3}, "command_usage": {}, "ui_actions": {}},
            "2026-11-26": {"api_usage": {}, "command_usage": {"sync": 1}, "ui_actions": {}},
        },
        "dropped": {"invalid_name": 1, "storage_error": 0, "over_capacity": 0},
    }
    assert hb.sequence == 1 and hb.status == "pending"
    assert store.drops(conn).pending["invalid_name"] == 0  # zeroed by the seal
    assert store.drops(conn).total["invalid_name"] == 1


def test_seal_writes_one_row_and_moves_the_cursor(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(100):
        t.track_api_call("users.list")
    store.instance_id(conn)
    rows_before = conn.execute("SELECT * FROM events").fetchall()
    changes_before = conn.total_changes
    hb = seal(conn, "a")
    assert hb is not None
    assert (hb.first_event_id, hb.last_event_id) == (0, 100)
    # heartbeat insert + 4 meta upserts (no drop reported, so no drop row); no event row
    assert conn.total_changes - changes_before == 1 + 4
    assert conn.execute("SELECT * FROM events").fetchall() == rows_before
    assert store.sealed_through(conn) == 100
    assert store.pending_counters(conn) == []


def test_a_drop_counted_while_sealing_goes_into_the_next_heartbeat(
    make_telemetry, conn, monkeypatch
) -> None:
    """The payload is built before the write lock: the drops it reports are subtracted at
    the commit, so one counted in between is neither lost nor reported twice."""
    t = make_telemetry()
    t.track_api_call("users.list")
    t.count_dropped("unknown_name", 2)
    encode = heartbeats.encode

    def meanwhile(payload):  # runs between the payload's snapshot and the write lock
        t.count_dropped("unknown_name", 5)
        return encode(payload)

    monkeypatch.setattr(heartbeats, "encode", meanwhile)
    hb = seal(conn, "a")
    assert hb is not None and json.loads(hb.payload)["dropped"]["unknown_name"] == 2
    assert store.drops(conn).pending["unknown_name"] == 5  # for the next heartbeat
    assert store.drops(conn).total["unknown_name"] == 7


def test_no_second_seal_while_one_is_pending(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_api_call("users.list")
    assert seal(conn, "a") is not None
    t.track_api_call("users.list")
    assert seal(conn, "b") is None
    heartbeats.settle(conn, "a", status="sent", now=T0, attempts=1)
    hb = seal(conn, "b")
    assert hb is not None and hb.sequence == 2 and hb.first_event_id == 1


def test_nothing_is_sealed_when_nothing_happened_unless_asked(conn) -> None:
    assert seal(conn, "a") is None
    hb = seal(conn, "a", allow_empty=True)
    assert hb is not None
    body = json.loads(hb.payload)
    assert body["api_usage"] == {} and body["days"] == {}
    assert body["period_start"] == body["period_end"] == "2026-11-25T10:00:00Z"


def test_seal_aborts_when_the_cursor_moved_after_the_plan(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_api_call("users.list")
    plan = heartbeats.plan_seal(conn)
    store.discard_unsent(conn)  # e.g. `outbox disable` in another process
    assert (
        heartbeats.commit_seal(
            conn, plan, heartbeat_id="a", now=T0, version="1", edition="community"
        )
        is None
    )
    assert heartbeats.history(conn) == []


def test_local_seal_is_settled_and_does_not_block(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_api_call("users.list")
    hb = seal(conn, "a", local=True)
    assert hb is not None and hb.status == "local" and hb.settled_at == T0
    t.track_api_call("users.list")
    assert seal(conn, "b", local=True) is not None
    assert heartbeats.pending(conn) is None


def test_settle_records_status_attempts_and_receipt(make_telemetry, conn) -> None:
    make_telemetry().track_api_call("users.list")
    hb = seal(conn, "a")
    assert hb is not None
    heartbeats.record_attempt(conn, "a", now=T0 + 1, error="HTTP 503")
    assert heartbeats.settle(
        conn, "a", status="sent", now=T0 + 2, attempts=1, receipt={"status": "accepted"}
    )
    done = heartbeats.get(conn, "a")
    assert done is not None
    assert (done.status, done.attempts, done.settled_at, done.last_error) == (
        "sent",
        2,
        T0 + 2,
        None,
    )
    assert json.loads(done.receipt or "") == {"status": "accepted"}
    assert not heartbeats.settle(conn, "a", status="rejected", now=T0 + 3, attempts=1)


def test_name_cap_keeps_the_most_used_and_counts_the_rest(make_telemetry, conn) -> None:
    t = make_telemetry()
    for i in range(5):
        t.track_ui_action(f"action_{i}", count=10 + i)
    hb = heartbeats.commit_seal(
        conn,
        heartbeats.plan_seal(conn),
        heartbeat_id="a",
        now=T0,
        version="1",
        edition="community",
        name_cap=3,
    )
    assert hb is not None
    body = json.loads(hb.payload)
    assert body["ui_actions"] == {"action_2": 12, "action_3": 13, "action_4": 14}
    assert body["dropped"]["over_capacity"] == 10 + 11


def test_capacity_drops_the_oldest_unsealed_rows_and_counts_them(make_telemetry, conn) -> None:
    t = make_telemetry()
    for i in range(30):
        t.track_api_call("users.list" if i < 10 else "users.get", count=2)
    dropped = maintenance.enforce_capacity(conn, max_rows=12, chunk=4)
    assert dropped == 18 * 2
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
    assert [(c.name, c.count) for c in store.pending_counters(conn)] == [("users.get", 24)]
    assert store.drops(conn).pending["over_capacity"] == 36
    hb = seal(conn, "a")
    assert hb is not None and json.loads(hb.payload)["dropped"]["over_capacity"] == 36


def test_compaction_also_folds_what_was_tracked_while_it_ran(make_telemetry, conn) -> None:
    """A busy instance tracks while a long compaction runs: those rows are folded too,
    so that the size cap after it does not drop the (big) compacted counts for rows
    compaction never looked at (found by tests/proof/test_contention.py)."""
    t = make_telemetry()
    for _ in range(30):
        t.track_api_call("users.list")
    tracked = []

    def hook(step: str) -> None:
        if not tracked:  # after the first window, the app tracks 30 more
            tracked.append(step)
            for _ in range(30):
                t.track_api_call("users.list")

    maintenance.compact(conn, chunk=10, hook=hook)
    assert maintenance.unsealed_rows(conn) == 1
    assert maintenance.enforce_capacity(conn, max_rows=5) == 0
    assert [(c.name, c.count) for c in store.pending_counters(conn)] == [("users.list", 60)]


def test_switching_off_discards_unsent_events_and_heartbeats(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_api_call("users.list", 5)
    assert seal(conn, "a") is not None
    t.track_command("sync", 2)
    decision, discarded = t.set_enabled(False)
    assert (discarded.events, discarded.heartbeats) == (2, 1)
    assert decision.mode == "off"
    assert heartbeats.history(conn) == []
    assert store.pending_counters(conn) == []
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    # Switching back on: nothing from before is ever sent.
    t.set_enabled(True)
    t.track_ui_action("bulk_edit")
    hb = seal(conn, "b")
    assert hb is not None
    body = json.loads(hb.payload)
    assert (body["api_usage"], body["command_usage"], body["ui_actions"]) == (
        {},
        {},
        {"bulk_edit": 1},
    )


def test_purge_sent_history_keeps_the_pending_heartbeat(make_telemetry, conn) -> None:
    t = make_telemetry()
    for i, hb_id in enumerate(["a", "b", "c"]):
        t.track_api_call("users.list", i + 1)
        assert seal(conn, hb_id, now=T0 + i * 86400) is not None
        if hb_id != "c":
            heartbeats.settle(conn, hb_id, status="sent", now=T0 + i * 86400, attempts=1)
    t.track_api_call("users.get")
    dry = maintenance.purge(conn, now=T0 + 3 * 86400, dry_run=True)
    assert (dry.heartbeats, dry.event_rows, dry.dry_run) == (2, 2, True)
    assert len(heartbeats.history(conn)) == 3
    done = maintenance.purge(conn, now=T0 + 3 * 86400)
    assert (done.heartbeats, done.event_rows) == (2, 2)
    assert [h.id for h in heartbeats.history(conn)] == ["c"]
    assert [c.count for c in store.inflight_counters(conn)] == [3]
    assert [(c.name, c.count) for c in store.pending_counters(conn)] == [("users.get", 1)]


def test_purge_older_than_only_takes_old_history(make_telemetry, conn) -> None:
    t = make_telemetry()
    for i, hb_id in enumerate(["a", "b"]):
        t.track_api_call("users.list")
        seal(conn, hb_id, now=T0 + i * 10 * 86400)
        heartbeats.settle(conn, hb_id, status="sent", now=T0 + i * 10 * 86400, attempts=1)
    result = maintenance.purge(conn, now=T0 + 15 * 86400, older_than=7 * 86400)
    assert result.heartbeats == 1
    assert [h.id for h in heartbeats.history(conn)] == ["b"]


def test_purge_never_touches_unsent_data(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(200):
        t.track_api_call("users.list")
    seal(conn, "a")
    for _ in range(100):
        t.track_ui_action("bulk_edit")
    assert maintenance.unsent(conn) == store.Discarded(100, 1)
    result = maintenance.purge(conn, now=T0, chunk=50)
    assert (result.heartbeats, result.event_rows) == (0, 0)
    assert maintenance.unsent(conn) == store.Discarded(100, 1)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 300


def test_erase_then_purge_removes_everything_and_reclaims_bytes(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(20_000):
        t.track_api_call("users.list")
    seal(conn, "a")
    for _ in range(100):
        t.track_ui_action("bulk_edit")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    erased = consent.erase_unsent(conn)
    assert (erased.discarded.events, erased.discarded.heartbeats, erased.wiped) == (100, 1, True)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert pages - conn.execute("PRAGMA page_count").fetchone()[0] > 100  # 20k rows given back
    assert maintenance.purge(conn, now=T0).event_rows == 0


def test_covered_events_are_deleted_in_chunks(make_telemetry, conn) -> None:
    t = make_telemetry()
    for _ in range(250):
        t.track_api_call("users.list")
    seal(conn, "a")
    steps: list[str] = []
    assert maintenance.delete_covered_events(conn, chunk=100, hook=steps.append) == 0  # pending
    heartbeats.settle(conn, "a", status="sent", now=T0, attempts=1)
    assert maintenance.delete_covered_events(conn, chunk=100, hook=steps.append) == 250
    assert steps == ["purge", "purge"]


def test_ids_are_never_reused_after_a_purge(make_telemetry, conn) -> None:
    t = make_telemetry()
    t.track_api_call("users.list")
    seal(conn, "a")
    heartbeats.settle(conn, "a", status="sent", now=T0, attempts=1)
    maintenance.purge(conn, now=T0)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    t.track_api_call("users.get")
    (new_id,) = conn.execute("SELECT id FROM events").fetchone()
    assert new_id == 2 > store.sealed_through(conn)
    assert [c.name for c in store.pending_counters(conn)] == ["users.get"]


def test_checkpoint_and_file_sizes(make_telemetry, conn, db_path) -> None:
    t = make_telemetry()
    for _ in range(100):
        t.track_api_call("users.list")
    assert maintenance.file_sizes(db_path).wal > 0
    busy, _, _ = maintenance.checkpoint(conn, "TRUNCATE")
    assert busy == 0
    assert maintenance.file_sizes(db_path).wal == 0
    with pytest.raises(ValueError):
        maintenance.checkpoint(conn, "NOW")
    assert store.get(conn, Meta.RECOVERED_AT, "dflt") == "dflt"


def test_an_opt_out_while_sealing_only_drop_counts_seals_nothing(
    make_telemetry, conn, db_path, monkeypatch
) -> None:
    """With no event to skip, an opt-out leaves the cursor where it was but zeroes the drop
    counts: a seal whose payload was built before it must not store them."""
    t = make_telemetry()
    t.count_dropped("storage_error", 5)
    encode = heartbeats.encode

    def meanwhile(payload):  # runs between the payload's snapshot and the write lock
        consent.switch(t_conn, False, now=T0)
        return encode(payload)

    t_conn = db.connect(db_path)
    try:
        monkeypatch.setattr(heartbeats, "encode", meanwhile)
        assert seal(conn, "a") is None
    finally:
        t_conn.close()
    assert heartbeats.history(conn) == []
    assert store.drops(conn).pending["storage_error"] == 0
