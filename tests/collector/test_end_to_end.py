"""Outbox → seal → POST → collector: what the insights show is exactly what was tracked.

The sending side here is the outbox's own seal and settle primitives driven by
hand (one delivery attempt per seal, the frozen bytes sent with their id as the
idempotency key), so that the collector's side of the contract is tested on
both backends without depending on the worker's schedule.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from outbox import Telemetry, db, heartbeats
from outbox.web.naming import DEFAULT_RELAY_RESOURCES, Vocabulary
from tests.support.clock import FakeClock
from tests.support.collector import Collector
from tests.support.totals import totals

HOUR = 3600
RELAYED = [
    ("GET", "/users"),
    ("GET", "/users/1042"),
    ("POST", "/users"),
    ("GET", "/groups/7"),
    ("DELETE", "/groups/7/members/a@b.example"),
    ("PATCH", "/users/42"),
]
RELAY = Vocabulary.build(DEFAULT_RELAY_RESOURCES)
COMMANDS = ["sync", "deploy", "export", "users.import"]
UI = ["bulk_edit", "export_csv", "column_sort"]


def deliver(c: Collector, path: Path, clock: FakeClock, *, resend: bool = False) -> list[str]:
    """Seal what is unsent and POST it; ``resend`` simulates a crash before the mark."""
    conn = db.connect(path)
    try:
        plan = heartbeats.plan_seal(conn)
        hb = heartbeats.commit_seal(
            conn,
            plan,
            heartbeat_id=str(uuid.uuid4()),
            now=int(clock()),
            version="1.4.2",
            edition="community",
        )
        if hb is None:
            return []
        answers = []
        for _ in range(2 if resend else 1):
            r = c.post(hb.payload, **{"Idempotency-Key": hb.id})
            assert r.status_code == 200, r.text
            assert r.json()["payload_sha256"] == hb.payload_sha256
            answers.append(str(r.json()["status"]))
        heartbeats.settle(
            conn, hb.id, status="sent", now=int(clock()), attempts=len(answers), receipt=r.json()
        )
        return answers
    finally:
        conn.close()


def test_three_instances_over_four_days_arrive_exactly(
    serve: Callable[..., Collector], tmp_path: Path
) -> None:
    collector = serve(min_instances=1)  # every name public: they are compared one by one
    clock = collector.clock
    clock.now -= 3 * 24 * HOUR  # start three days before "today" of the collector's clock
    rng = random.Random(5)
    paths = [tmp_path / f"helios-{i}" / "telemetry.db" for i in range(3)]
    outboxes = [Telemetry(db_path=p, enabled=True, environ={}, clock=clock) for p in paths]
    statuses: Counter[str] = Counter()
    for _day in range(4):
        for _hour in range(0, 24, 3):
            for t in outboxes:
                for _ in range(rng.randint(0, 12)):
                    t.track_api_call(RELAY.name(*rng.choice(RELAYED)))  # type: ignore[arg-type]
                if rng.random() < 0.3:
                    t.track_command(rng.choice(COMMANDS))
                if rng.random() < 0.5:
                    t.track_ui_action(rng.choice(UI), count=rng.randint(1, 3))
                t.track_ui_action("alice@example.com")  # refused and counted, never sent
            clock.advance(3 * HOUR)
        for i, p in enumerate(paths):
            if i == 2 and _day == 1:
                continue  # offline for a day: the next heartbeat covers both days
            statuses.update(deliver(collector, p, clock, resend=(i == 0)))
    for t in outboxes:
        t.close()

    tracked: Counter[tuple[str, str]] = Counter()
    for p in paths:
        tracked.update(totals(p))
    doc = collector.insights(days=7, top=100)
    keys = {"api_usage": "api", "command_usage": "command", "ui_actions": "ui"}
    received = Counter(
        {(kind, name): n for key, kind in keys.items() for name, n in doc[key].items()}
    )
    assert received == tracked
    assert sum(doc["totals"].values()) == sum(tracked.values())
    assert statuses == {"accepted": 11, "duplicate": 4}  # instance 0 sent each one twice
    assert doc["heartbeats"] == {"received": 11, "missing": 0}
    assert doc["dropped"] == {"invalid_name": 3 * 4 * 8}
    assert doc["instances"]["active_7d"] == 3
