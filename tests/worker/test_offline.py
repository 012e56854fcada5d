"""The receiver down for a simulated week (fake clock, real HTTP server that stops listening)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import pytest

from outbox import Telemetry, heartbeats
from outbox.contract import iso_utc
from tests.support.clock import T0, FakeClock
from tests.support.receiver import Receiver
from worker.loop import Worker

from .conftest import Sleeps, drive

DAY = 86400


def test_a_week_offline_is_one_heartbeat_with_the_right_days_delivered_once(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = make_telemetry()
    w = make_worker(endpoint=receiver.url, checkpoint_every=3600.0)
    expected: Counter[tuple[str, str, str]] = Counter()

    def use(day: int) -> None:
        date = iso_utc(T0 + day * DAY)[:10]
        for _ in range(10 + day):
            t.track_api_call("users.list")
        t.track_command("sync", day + 1)
        expected[(date, "api", "users.list")] += 10 + day
        expected[(date, "command", "sync")] += day + 1

    use(0)
    drive(w, clock, T0 + 600)  # the first heartbeat goes out at +5 min
    assert len(receiver.payloads()) == 1
    caplog.set_level(logging.INFO, logger="worker")
    with receiver.down():
        for day in range(1, 8):
            drive(w, clock, T0 + day * DAY + 12 * 3600)  # 22:00 UTC of that day
            use(day)
        summaries = drive(w, clock, T0 + 8 * DAY)
        [pending] = heartbeats.history(w.conn, status="pending")
        assert summaries[-1].pending == pending.id
    delivered_down = len(receiver.payloads())
    assert delivered_down == 1  # nothing got through while it was down
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # one line per backoff window: as many lines as delivery cycles, 3 attempts each
    assert pending.attempts == 3 * len(warnings)
    # after the ramp-up (1 min doubling), cycles are 30 to 60 minutes apart
    assert 7 * 24 < len(warnings) < 8 * 48
    assert all("not delivered" in r.getMessage() for r in warnings)

    drive(w, clock, T0 + 8 * DAY + 3 * 3600)  # back up: the next cycle delivers
    payloads = receiver.payloads()
    assert [p["sequence"] for p in payloads] == [1, 2, 3]
    # the one sealed (empty) on day 1 before the receiver's outage was noticed went first,
    # then one heartbeat covering the whole week, split by day
    assert payloads[1]["days"] == {}
    week = payloads[2]
    assert week["period_start"] == "2026-11-26T22:00:00Z"  # the first event of the week
    assert list(week["days"]) == [
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
        "2026-11-29",
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
    ]
    assert week["days"]["2026-11-29"] == {
        "api_usage": {"users.list": 14},
        "command_usage": {"sync": 5},
        "ui_actions": {},
    }
    assert receiver.day_totals() == dict(expected)
    # delivered exactly once: every id once, no duplicate POST of an accepted heartbeat
    ids = Counter(r.headers["idempotency-key"] for r in receiver.posts())
    assert len(receiver.stored) == 3 and all(n == 1 for n in ids.values())
    assert heartbeats.pending(w.conn) is None
