"""The worker SIGKILLed at every step boundary, end to end against the real collector.

For each step of ``worker.pacing.STEPS`` an outbox is built so that the step is
really reached, the real command line (``tests.worker.kill_at``) kills itself
there with SIGKILL (the test checks it died of SIGKILL: the step was reached), a
few more events are tracked while it is down, and a clean worker is started.
Then the reference collector (uvicorn + SQLite, behind a pass-through proxy; it
records every answer it gives) must hold exactly what was written, with no sequence gap,
no repeated sequence, no rejected heartbeat and no 409, and the outbox must pass
``PRAGMA integrity_check``.

Three outboxes reach every step:

``deliver``   a heartbeat left pending (the receiver was down), an 80,000-row
              backlog (two read windows: ``plan``), and history past the
              retention period: the crash run delivers the pending heartbeat,
              seals and delivers the backlog, purges the old heartbeat and the
              covered rows in chunks (``purge``), vacuums (``vacuum``), checkpoints.
``compact``   the receiver answers 503, so the backlog behind the pending
              heartbeat is compacted (``compact``: after the first window).
``capacity``  the receiver answers 503 and 52,200 distinct (kind, name, day)
              rows wait: 2,200 more than the size cap, so the oldest 2,200 rows
              are dropped in one transaction (``capacity``) and must reach the
              collector as ``dropped.over_capacity``, exactly.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outbox import heartbeats, maintenance
from tests.proof.harness import invariants
from tests.support.collector import Collector
from tests.support.faultproxy import FaultProxy
from tests.support.outboxes import Outbox
from tests.support.processes import kill_worker_at, once, run_worker, worker_env
from worker.pacing import STEPS

pytestmark = pytest.mark.slow

DAY = 86400
NAMES = {
    "api": ("users.list", "users.get", "projects.list", "reports.export"),
    "command": ("sync", "users.import"),
    "ui": ("bulk_edit", "export_csv"),
}
SCENARIO = {"compact": "compact", "capacity": "capacity"}
ONE_TRY = ("--retry-attempts", "1", "--connect-timeout", "2", "--read-timeout", "10")


@pytest.fixture
def proxy(collector: Collector) -> Iterator[FaultProxy]:
    """In front of the collector: pass-through or down (503)."""
    p = FaultProxy(collector.port, seed=0, retry_after="1").start()
    try:
        yield p
    finally:
        p.stop()


def backlog(n: int, *, now: int, days: int, rng: random.Random) -> list[tuple[str, str, int, int]]:
    keys = [(k, name) for k, names in NAMES.items() for name in names]
    rows = []
    for _ in range(n):
        kind, name = rng.choice(keys)
        rows.append((kind, name, rng.randint(1, 3), now - rng.randrange(days * DAY)))
    return rows


def run_once(outbox: Outbox, proxy: FaultProxy) -> subprocess.CompletedProcess[str]:
    return run_worker(*once(outbox.path, proxy.url, *ONE_TRY), env=worker_env())


def make_pending(outbox: Outbox, proxy: FaultProxy, now: int) -> None:
    """A sealed heartbeat the receiver did not take (503): it stays pending."""
    outbox.add_rows([("api", "users.list", 1, now - 60 * i) for i in range(10)])
    proxy.set_weights({"503": 1})
    r = run_once(outbox, proxy)
    assert r.returncode == 1, r.stderr
    assert outbox.state().pending is not None


def build_deliver(outbox: Outbox, proxy: FaultProxy, rng: random.Random, now: int) -> str:
    """History past retention, a pending heartbeat, an 80,000-row backlog. Returns the
    id of the old heartbeat that the crash run's purge deletes."""
    outbox.add_rows(backlog(2_000, now=now - 40 * DAY, days=1, rng=rng))
    proxy.set_weights({"pass": 1})
    r = run_once(outbox, proxy)
    assert r.returncode == 0, r.stderr
    conn = outbox.connect()
    try:
        [old] = heartbeats.history(conn, status="sent")
        conn.execute("UPDATE heartbeats SET settled_at = ? WHERE id = ?", (now - 40 * DAY, old.id))
    finally:
        conn.close()
    make_pending(outbox, proxy, now)
    outbox.add_rows(backlog(80_000, now=now, days=5, rng=rng))
    proxy.set_weights({"pass": 1})
    return old.id


def build_compact(outbox: Outbox, proxy: FaultProxy, rng: random.Random, now: int) -> None:
    make_pending(outbox, proxy, now)
    outbox.add_rows(backlog(45_000, now=now, days=3, rng=rng))  # folds to ~24 rows


def build_capacity(
    outbox: Outbox, proxy: FaultProxy, rng: random.Random, now: int
) -> dict[tuple[str, str], int]:
    """52,200 distinct (kind, name, day) rows, oldest first; returns what the size cap
    will drop (the first 2,200 rows) per (kind, name)."""
    make_pending(outbox, proxy, now)
    names = [(k, f"{k}_name{i}") for k in ("api", "command", "ui") for i in range(200)]
    rows = [
        (kind, name, rng.randint(1, 3), now - day * DAY)
        for day in range(86, -1, -1)  # the oldest day first: the lowest ids
        for kind, name in names
    ]
    excess = len(rows) - maintenance.DEFAULT_MAX_ROWS
    assert excess == 2_200
    outbox.add_rows(rows)
    dropped: dict[tuple[str, str], int] = {}
    for kind, name, count, _ in rows[:excess]:
        dropped[(kind, name)] = dropped.get((kind, name), 0) + count
    return dropped


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_step_then_restarted_counts_everything_once(
    step: str, tmp_path: Path, collector: Collector, proxy: FaultProxy, seed: int
) -> None:
    rng = random.Random(seed)
    now = int(time.time())
    outbox = Outbox(tmp_path / "outbox" / "telemetry.db")
    scenario = SCENARIO.get(step, "deliver")
    old_id = None
    cap_dropped: dict[tuple[str, str], int] = {}
    if scenario == "deliver":
        old_id = build_deliver(outbox, proxy, rng, now)
    elif scenario == "compact":
        build_compact(outbox, proxy, rng, now)
    else:
        cap_dropped = build_capacity(outbox, proxy, rng, now)
    rows_before = outbox.rows()

    r = kill_worker_at(step, *once(outbox.path, proxy.url, *ONE_TRY), env=worker_env())
    where = f"step {step} ({scenario}), HELIOS_PROOF_SEED={seed}"
    assert r.returncode == -signal.SIGKILL, f"{where}: not killed there: {r.returncode} {r.stderr}"
    if scenario == "compact":
        after = outbox.state()
        assert after.pending is not None, where
        assert outbox.rows() < rows_before, f"{where}: no compaction committed before the kill"

    # Tracked while the worker is down (the capacity outbox already has 200 names per
    # kind, the most a heartbeat carries: it gets two of those).
    down = ("command_name0", "ui_name7") if scenario == "capacity" else ("sync", "bulk_edit")
    outbox.add_rows([("command", down[0], 1, now), ("ui", down[1], 2, now)])
    proxy.set_weights({"pass": 1})
    r = run_once(outbox, proxy)
    assert r.returncode == 0, f"{where}: restart failed: {r.returncode} {r.stderr}"
    proxy.wait_idle()

    expected = dict(outbox.written)
    for key, n in cap_dropped.items():
        expected[key] -= n
    state = outbox.state()
    problems = invariants(collector, [state], expected=expected)
    assert not problems, f"{where}: " + "\n".join(problems)
    dropped = collector.dropped()
    assert dropped.get("over_capacity", 0) == sum(cap_dropped.values()), f"{where}: {dropped}"
    assert set(dropped) <= {"over_capacity"}, f"{where}: {dropped}"
    if old_id is not None:
        conn = outbox.connect()
        try:
            assert heartbeats.get(conn, old_id) is None, f"{where}: old history not purged"
        finally:
            conn.close()
