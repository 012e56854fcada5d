"""Outage and capacity: the collector unreachable for a simulated month at a high event
rate (injected clock, in-process worker ticks, the real collector on 127.0.0.1 that
stops listening and comes back on its port).

* A month offline: compaction keeps the outbox far under its row cap (nothing
  dropped), the heartbeat that covers the month has exact per-UTC-day buckets, and
  everything is delivered exactly once when the collector is back.
* Past the cap: the oldest unsealed rows are dropped, and exactly their counts are
  reported in ``dropped.over_capacity``; collector totals + over_capacity == tracked.

"Receiver unreachable for a long time: one log line per backoff window" is proven in
``tests/worker/test_offline.py`` (a week); the month here only reports the figure.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import Storage
from outbox import Telemetry, heartbeats, maintenance
from outbox.contract import iso_utc
from tests.proof.harness import in_process_worker, record
from tests.support.clock import FakeClock
from tests.support.collector import Collector
from tests.support.totals import payload_day_totals
from worker.loop import Summary
from worker.retry import CYCLE_CAP
from worker.schedule import FIRST_DELAY
from worker.sender import Delivery

DAY = 86400
#: 2026-12-01T00:00:00Z
M0 = 1796083200
NAMES = (
    [("api", f"v1.res{i:02d}.list") for i in range(40)]
    + [("command", f"job{i:02d}") for i in range(12)]
    + [("ui", f"button{i}") for i in range(8)]
)

Group = tuple[str, str, str]  # (UTC day, kind, name), as in DayTotals


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    with Collector(Storage(tmp_path / "collector.db"), clock=FakeClock(M0)).start() as c:
        c.stop()  # down from the start; it comes back on the same port
        yield c


class Month:
    """Drives a worker and a writer on one fake clock; remembers what was tracked."""

    def __init__(self, db: Path, endpoint: str, max_rows: int, seed: int) -> None:
        self.clock = FakeClock(M0 - 3600)
        self.rng = random.Random(seed)
        self.worker = in_process_worker(
            db, endpoint, clock=self.clock, max_rows=max_rows, seed=seed
        )
        self.t = Telemetry(db_path=db, enabled=True, environ={}, clock=self.clock)
        self.tracked: Counter[Group] = Counter()
        self.order: list[Group] = []  # groups by first occurrence
        self.calls = 0
        self.summaries: list[Summary] = []
        self.deliveries: list[tuple[float, Delivery]] = []  # (when, what) per delivery cycle
        self.max_rows_seen = 0
        self.max_bytes_seen = 0
        self.wake = self.clock.now

    def close(self) -> None:
        self.t.close()
        self.worker.close()

    def track_hour(self, calls: int) -> None:
        for _ in range(calls):
            kind, name = self.rng.choice(NAMES)
            n = self.rng.randint(1, 15)
            assert self.t.track(kind, name, n)  # type: ignore[arg-type]
            g = (iso_utc(self.clock.now)[:10], kind, name)
            if g not in self.tracked:
                self.order.append(g)
            self.tracked[g] += n
            self.calls += 1

    def run_until(self, until: float) -> None:
        """Tick whenever the loop would wake, up to ``until``."""
        while self.wake <= until:
            self.clock.now = max(self.clock.now, self.wake)
            s = self.worker.tick(self.clock.now)
            self.summaries.append(s)
            self.deliveries += [(self.clock.now, d) for d in s.deliveries]
            conn = self.worker.conn
            self.max_rows_seen = max(self.max_rows_seen, maintenance.unsealed_rows(conn))
            pages, size = conn.execute(
                "SELECT * FROM pragma_page_count(), pragma_page_size()"
            ).fetchone()
            self.max_bytes_seen = max(self.max_bytes_seen, pages * size)
            self.wake = self.worker.next_wake(self.clock.now, s)
        self.clock.now = max(self.clock.now, until)

    def offline(self, days: int, calls_per_hour: int) -> None:
        self.run_until(M0 - 1)  # the first (empty) heartbeat is sealed at +5 min, pending
        for h in range(days * 24):
            self.clock.now = M0 + h * 3600 + 60
            self.track_hour(calls_per_hour)
            self.run_until(M0 + (h + 1) * 3600 - 1)
        self.run_until(M0 + days * DAY + 3600)  # a cycle after the last event

    def usage_by_day(self, keep: set[Group] | None = None) -> dict[Group, int]:
        return {g: n for g, n in self.tracked.items() if keep is None or g in keep}


@pytest.mark.slow
def test_a_month_offline_stays_under_the_cap_and_is_delivered_once_by_day(
    tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    db = tmp_path / "outbox" / "telemetry.db"
    m = Month(db, collector.endpoint, max_rows=5_000, seed=30)
    try:
        m.offline(days=30, calls_per_hour=125)
        conn = m.worker.conn
        [pending] = heartbeats.history(conn, status="pending")
        assert pending.sequence == 1 and pending.last_event_id == pending.first_event_id
        # Compaction alone kept the outbox under its cap: one row per (day, kind, name).
        groups = len(m.tracked)
        assert maintenance.unsealed_rows(conn) == groups
        assert m.max_rows_seen < 5_000
        assert dict(conn.execute("SELECT reason, pending FROM dropped")) == {
            "invalid_name": 0,
            "storage_error": 0,
            "over_capacity": 0,
            "unknown_name": 0,
        }
        assert collector.answers.log == []
        # Delivery was tried all month long, 3 attempts per backoff window, with one log line
        # per window: the first window at the first seal, then at most an hour apart (the cap
        # of the backoff; a retry due while an hour's events are tracked runs right after).
        cycles = m.deliveries
        assert {(d.result, d.attempts) for _, d in cycles} == {("pending", 3)}
        times = [at for at, _ in cycles]
        assert times[0] == M0 - 3600 + FIRST_DELAY
        gaps = [b - a for a, b in zip(times, [*times[1:], m.clock.now], strict=True)]
        assert max(gaps) <= CYCLE_CAP + 61
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == len(cycles)
        attempts = heartbeats.get(conn, pending.id).attempts  # type: ignore[union-attr]
        assert attempts == 3 * len(cycles)

        collector.start()
        m.run_until(m.clock.now + 2 * 3600)
        sent = heartbeats.history(conn, status="sent")
        assert heartbeats.pending(conn) is None
    finally:
        m.close()
    assert [h.sequence for h in sorted(sent, key=lambda h: h.sequence)] == [1, 2]
    [first, month] = collector.heartbeats()
    assert first["days"] == {}
    assert len(month["days"]) == 30
    assert list(month["days"])[0] == "2026-12-01" and list(month["days"])[-1] == "2026-12-30"
    assert payload_day_totals([month]) == m.usage_by_day()
    assert month["dropped"] == {"invalid_name": 0, "storage_error": 0, "over_capacity": 0}
    assert collector.day_totals() == m.usage_by_day()
    assert collector.answers.statuses() == Counter({"accepted": 2})
    events = sum(m.tracked.values())
    assert sum(collector.totals().values()) == events
    record(
        "outage_month",
        simulated_days=30,
        track_calls=m.calls,
        events_tracked=events,
        events_counted=sum(collector.totals().values()),
        events_per_day=events // 30,
        names=len(NAMES),
        max_unsealed_rows=m.max_rows_seen,
        row_cap=5_000,
        rows_after_compaction=groups,
        max_outbox_bytes=m.max_bytes_seen,
        failed_attempts=attempts,
        warning_lines=len(warnings),
        dropped=0,
        duplicates=0,
    )


def test_past_the_cap_the_oldest_rows_are_dropped_and_reported_exactly(
    tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    db = tmp_path / "outbox" / "telemetry.db"
    cap = 200
    m = Month(db, collector.endpoint, max_rows=cap, seed=12)
    try:
        m.offline(days=8, calls_per_hour=30)
        conn = m.worker.conn
        assert maintenance.unsealed_rows(conn) == cap
        collector.start()
        m.run_until(m.clock.now + 2 * 3600)
        assert heartbeats.pending(conn) is None
    finally:
        m.close()
    # Compaction leaves one row per group, ordered by first occurrence; the size cap
    # deletes from the oldest. So exactly the first len - cap groups are gone.
    lost_groups = m.order[: len(m.order) - cap]
    kept = set(m.order[len(m.order) - cap :])
    over_capacity = sum(m.tracked[g] for g in lost_groups)
    assert over_capacity > 0
    [_, payload] = collector.heartbeats()
    assert payload["dropped"] == {
        "invalid_name": 0,
        "storage_error": 0,
        "over_capacity": over_capacity,
    }
    assert payload_day_totals([payload]) == m.usage_by_day(kept)
    assert collector.day_totals() == m.usage_by_day(kept)
    assert {r: n for r, n in collector.dropped().items() if n} == {"over_capacity": over_capacity}
    counted = sum(collector.totals().values())
    tracked = sum(m.tracked.values())
    assert counted + over_capacity == tracked
    # The oldest went first: every lost day is no later than every kept day.
    assert max(g[0] for g in lost_groups) <= min(g[0] for g in kept)
    logged = [r for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert sum(int(r.args[1]) for r in logged) == over_capacity  # type: ignore[index]
    assert collector.answers.statuses() == Counter({"accepted": 2})
    record(
        "outage_over_cap",
        simulated_days=8,
        events_tracked=tracked,
        events_counted=counted,
        over_capacity=over_capacity,
        row_cap=cap,
        groups=len(m.order),
        groups_dropped=len(lost_groups),
        lost_unreported=tracked - counted - over_capacity,
    )
