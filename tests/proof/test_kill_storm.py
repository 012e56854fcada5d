"""Kill storm: workers SIGKILLed at random instants while writers track, behind faults.

Seeded (``HELIOS_PROOF_SEED``, printed, in every assertion message). Several
outboxes (instances), each with writer processes tracking a known mix of names
(and a few invalid ones), and one "lane" that starts the real ``python -m worker
--once`` again and again and SIGKILLs it unless it finished first. Where each run is
killed is planned from the seed: while it starts (0-0.25 s after the process
started), once it holds the outbox (0-0.5 s after it says so: delivering what was
left pending, planning a seal), once it sealed a heartbeat (0-0.3 s after: the POST,
its retries, the mark), or once it delivered one (0-0.1 s after: maintenance, the next
seal). Every request goes through :class:`FaultProxy` to the reference collector:
pass, 503, 429 + Retry-After, reset, slow past the client's timeout, and lost after
the collector stored it. Then the writers stop, the proxy passes everything, and a
clean worker drains each outbox.

Must hold: the collector's totals per (kind, name) equal what the writers' track
calls returned True for, exactly (per instance and per kind too); the drops it
received equal the writers' refused calls; no sequence gap, no repeated sequence,
no 409, no rejected heartbeat; every outbox and the collector pass
``PRAGMA integrity_check``; the writers saw no exception; each fault class was
chosen at least once; at least 200 SIGKILLs, and at least 5 in each phase that
matters (holding the outbox, after a seal, after a delivery), as the worker's own log
shows the last step it had reached when it died (a run that delivered what was left
pending seals next: a kill planned after a delivery may land after that seal).

``HELIOS_PROOF_SOAK=SECONDS`` runs the storm at least that long (a local soak).
The figures go to ``tests/proof/.results/kill_storm.json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.proof.harness import (
    FAST_RETRY,
    Writer,
    compare,
    expected_drops,
    invariants,
    record,
    tracked_totals,
)
from tests.support.collector import Collector
from tests.support.faultproxy import FAULTS, FaultProxy
from tests.support.outboxes import Outbox
from tests.support.processes import Proc, once, run_worker, worker_env

pytestmark = pytest.mark.slow

LANES = 3  # outboxes, each with its own writers and its own worker being killed
WRITERS_PER_LANE = 2
MIN_KILLS = 200
MIN_PER_PHASE = 5
MAX_SECONDS = 480.0  # give up (and fail) if 200 kills take longer than this (+ the soak)
WEIGHTS = {"pass": 0.3, "503": 0.12, "429": 0.12, "reset": 0.12, "slow": 0.12}
WEIGHTS["lost_after_store"] = 0.22
SLOW_SECONDS = 1.0  # past the worker's --read-timeout 0.5

#: The phases of a ``--once`` run and the log line that starts each (a run may go from
#: "delivered" back to "sealed": it delivers what was pending, then seals what is new).
PHASES = ("starting", "opened", "sealed", "delivered")
MARKERS = {"opened": " holds ", "sealed": "sealed heartbeat", "delivered": "delivered heartbeat"}
#: Where the runs are killed (share of the runs), and how long after that phase began.
KILL_PLAN = {"starting": 0.15, "opened": 0.35, "sealed": 0.3, "delivered": 0.2}
KILL_AFTER = {"starting": 0.25, "opened": 0.5, "sealed": 0.3, "delivered": 0.1}
#: The phases every storm must have killed workers in (a start-up kill is not asserted:
#: how fast a worker opens its outbox decides whether one lands there).
MUST_KILL_IN = ("opened", "sealed", "delivered")


def phase(log: str) -> str:
    """The last phase a worker's log shows it reached."""
    reached = "starting"
    for line in log.splitlines():
        if MARKERS["opened"] in line and reached == "starting":
            reached = "opened"
        elif MARKERS["sealed"] in line:
            reached = "sealed"
        elif MARKERS["delivered"] in line:
            reached = "delivered"
    return reached


@dataclass
class Lane:
    """One outbox and its worker, started and SIGKILLed until told to stop."""

    outbox: Outbox
    endpoint: str
    rng: random.Random
    kills: int = 0
    runs: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    # every phase there from the start: the test thread reads them while the lane runs
    planned: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(PHASES, 0)))
    killed_in: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(PHASES, 0)))
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        log_path = self.outbox.path.parent / "worker.log"
        env = worker_env()
        while not stop.is_set():
            target = self.rng.choices(PHASES, weights=[KILL_PLAN[p] for p in PHASES])[0]
            delay = self.rng.uniform(0.0, KILL_AFTER[target])
            proc = Proc.worker(
                *once(self.outbox.path, self.endpoint, *FAST_RETRY), env=env, log=log_path
            )
            try:
                self.runs += 1
                killed = self._kill_in(proc, target, delay)
                code = proc.kill()
                text = proc.text()
                if killed and code == -signal.SIGKILL:
                    self.kills += 1
                    self.planned[target] += 1
                    self.killed_in[phase(text)] += 1
                    continue
                self.exits[code] += 1
                if code not in (0, 1) or "Traceback" in text:
                    self.errors.append(f"exit {code}: {text[-1500:]}")
            except Exception as e:  # noqa: BLE001 - reported by the test, never swallowed
                self.errors.append(f"lane: {type(e).__name__}: {e}")
                proc.kill()
                return

    def _kill_in(self, proc: Proc, target: str, delay: float) -> bool:
        """Wait for ``target`` to begin (its log line), then ``delay`` seconds, then SIGKILL;
        False when the run ended first."""
        if target != "starting":
            marker, began = MARKERS[target], time.monotonic() + 60
            while marker not in proc.text():
                if proc.returncode is not None:
                    return False
                if time.monotonic() > began:
                    raise TimeoutError(f"the worker did not reach {target!r} within 60 s")
                time.sleep(0.005)
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            return True


def summary(f: dict[str, Any]) -> str:
    return (
        f"seed {f['seed']}, {f['kills']} kills, {f['worker_runs']} worker runs, "
        f"{f['heartbeats']} heartbeats, {f['events_tracked']} events tracked, "
        f"{f['events_counted']} counted, lost {f['lost']}, doubled {f['doubled']}, "
        f"killed in {json.dumps(f['killed_in'])}, faults {json.dumps(f['faults'])}, "
        f"answers {json.dumps(f['collector_answers'])}"
    )


def soak_seconds() -> float | None:
    raw = os.environ.get("HELIOS_PROOF_SOAK")
    return float(raw) if raw else None


def test_kill_storm(
    tmp_path: Path, collector: Collector, seed: int, say: Callable[[str], None]
) -> None:
    rng = random.Random(seed)
    soak = soak_seconds()
    where = f"HELIOS_PROOF_SEED={seed}"
    proxy = FaultProxy(
        collector.port,
        seed=rng.randrange(2**32),
        weights=WEIGHTS,
        slow_seconds=SLOW_SECONDS,
        retry_after="1",
    ).start()
    lanes = [
        Lane(Outbox(tmp_path / f"outbox{i}" / "telemetry.db"), proxy.url, random.Random(seed + i))
        for i in range(LANES)
    ]
    writers = [
        Writer(
            lane.outbox.path,
            rng.randrange(2**31),
            tmp_path / "writers",
            pause=0.004,
            invalid=0.01,
            max_seconds=(soak or 0) + MAX_SECONDS + 300,
        )
        for lane in lanes
        for _ in range(WRITERS_PER_LANE)
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=lane.run, args=(stop,), daemon=True) for lane in lanes]
    started = time.monotonic()
    try:
        for w in writers:
            w.start()
        for t in threads:
            t.start()
        while True:
            time.sleep(0.25)
            elapsed = time.monotonic() - started
            kills = sum(lane.kills for lane in lanes)
            landed = sum((lane.killed_in for lane in lanes), Counter())
            enough = (
                kills >= MIN_KILLS
                and all(proxy.stats[f] for f in FAULTS)
                and all(landed[p] >= MIN_PER_PHASE for p in MUST_KILL_IN)
            )
            if any(lane.errors for lane in lanes) or elapsed > (soak or 0) + MAX_SECONDS:
                break  # reported below
            if enough and elapsed >= (soak or 0):
                break
        stop.set()
        for t in threads:
            t.join(timeout=60)
        storm_seconds = time.monotonic() - started
        results = [w.finish() for w in writers]

        # The clean drain: every request passes now.
        proxy.set_weights({"pass": 1})
        drains = []
        for lane in lanes:
            for _ in range(3):
                r = run_worker(*once(lane.outbox.path, proxy.url, *FAST_RETRY), env=worker_env())
                drains.append(r.returncode)
                if r.returncode == 0:
                    break
            assert r.returncode == 0, f"{where}: the drain failed: {r.stdout} {r.stderr}"
        proxy.wait_idle(timeout=30)
    finally:
        stop.set()
        for w in writers:
            w.kill()
        for t in threads:
            t.join(timeout=60)
        proxy.stop()

    errors = [e for lane in lanes for e in lane.errors]
    assert not errors, f"{where}: a worker failed:\n" + "\n".join(errors[:5])
    for r in results:
        assert r["exception_count"] == 0, f"{where}: a track call raised: {r['exceptions']}"
        assert r["invalid_true"] == 0, f"{where}: an invalid name was stored"

    expected = tracked_totals(results)
    counted = collector.totals()
    lost, doubled, _ = compare(expected, counted)
    states = [lane.outbox.state() for lane in lanes]
    kills = sum(lane.kills for lane in lanes)
    drops = expected_drops(results)
    killed_in = dict(sum((lane.killed_in for lane in lanes), Counter()))
    figures: dict[str, Any] = {
        "seed": seed,
        "soak_seconds": soak,
        "storm_seconds": round(storm_seconds, 1),
        "instances": LANES,
        "writers": len(writers),
        "kills": kills,
        "worker_runs": sum(lane.runs for lane in lanes),
        "worker_exits": dict(sum((lane.exits for lane in lanes), Counter())),
        "kills_planned": dict(sum((lane.planned for lane in lanes), Counter())),
        "killed_in": killed_in,
        "heartbeats": sum(s.last_sequence for s in states),
        "track_calls": sum(r["calls"] for r in results),
        "events_tracked": sum(expected.values()),
        "events_counted": sum(counted.values()),
        "lost": lost,
        "doubled": doubled,
        "dropped_at_collector": collector.dropped(),
        "writer_refused": drops,
        "writer_unstored": sum(sum(r["unstored"].values()) for r in results),
        "faults": {f: proxy.stats[f] for f in FAULTS},
        "proxy_timeouts": proxy.stats["proxy_timeout"],
        "collector_answers": dict(collector.answers.statuses()),
        # how many times a stored heartbeat was answered "duplicate" -> how many heartbeats
        "duplicates_per_heartbeat": dict(
            sorted(
                Counter(a.count("duplicate") for a in collector.answers.by_id().values()).items()
            )
        ),
    }
    record("kill_storm", **figures)
    say("kill storm: " + summary(figures))

    where = f"{where} ({json.dumps(figures)})"
    assert kills >= MIN_KILLS, f"{where}: only {kills} SIGKILLs"
    few = {p: killed_in.get(p, 0) for p in MUST_KILL_IN if killed_in.get(p, 0) < MIN_PER_PHASE}
    assert not few, f"{where}: fewer than {MIN_PER_PHASE} kills in {few}"
    missing_faults = [f for f in FAULTS if not proxy.stats[f]]
    assert not missing_faults, f"{where}: fault classes never chosen: {missing_faults}"
    problems = invariants(collector, states, expected=expected)
    for lane, state in zip(lanes, states, strict=True):
        mine = [r for r, w in zip(results, writers, strict=True) if w.outbox == lane.outbox.path]
        per_kind: Counter[str] = Counter()
        for (kind, _), n in tracked_totals(mine).items():
            per_kind[kind] += n
        info = collector.storage.instance(state.instance_id)
        stored = {} if info is None else {k: n for k, n in info.totals.items() if k != "dropped"}
        if stored != dict(per_kind):
            problems.append(f"instance {state.instance_id}: per kind {stored} != {dict(per_kind)}")
    if collector.dropped() != drops:
        problems.append(f"drops at the collector {collector.dropped()} != refused {drops}")
    assert not problems, f"{where}:\n" + "\n".join(problems)
