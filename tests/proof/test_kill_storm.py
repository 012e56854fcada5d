"""Kill storm: workers SIGKILLed at random instants while writers track, behind faults.

Seeded (``HELIOS_PROOF_SEED``, printed, in every assertion message). Several
outboxes (instances), each with writer processes tracking a known mix of names
(and a few invalid ones), and one "lane" that starts the real ``python -m worker
--once`` again and again and SIGKILLs it after a random delay (0.05-1.5 s) unless
it finished first. Every request goes through :class:`FaultProxy` to the
reference collector: pass, 503, 429 + Retry-After, reset, slow past the client's
timeout, and lost after the collector stored it. Then the writers stop, the proxy
passes everything, and a clean worker drains each outbox.

Must hold: the collector's totals per (kind, name) equal what the writers' track
calls returned True for, exactly (per instance and per kind too); the drops it
received equal the writers' refused calls; no sequence gap, no repeated sequence,
no 409, no rejected heartbeat; every outbox and the collector pass
``PRAGMA integrity_check``; the writers saw no exception; each fault class was
chosen at least once; at least 200 SIGKILLs.

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

from tests.proof.faultproxy import FAULTS, FaultProxy
from tests.proof.harness import (
    FAST_RETRY,
    Outbox,
    RealCollector,
    Writer,
    compare,
    invariants,
    reap,
    run_worker,
    start_worker,
    tracked_totals,
    write_results,
)

pytestmark = pytest.mark.slow

LANES = 3  # outboxes, each with its own writers and its own worker being killed
WRITERS_PER_LANE = 2
MIN_KILLS = 200
MAX_SECONDS = 480.0  # give up (and fail) if 200 kills take longer than this (+ the soak)
KILL_AFTER = (0.05, 1.5)
WEIGHTS = {"pass": 0.3, "503": 0.12, "429": 0.12, "reset": 0.12, "slow": 0.12}
WEIGHTS["lost_after_store"] = 0.22
SLOW_SECONDS = 1.0  # past the worker's --read-timeout 0.5


#: Where a killed worker was, from what it had logged: the phases in order.


def phase(log: str) -> str:
    """The last phase a worker's log shows it reached."""
    reached = "starting"
    for line in log.splitlines():
        if " holds " in line and reached == "starting":
            reached = "opened"
        elif "sealed heartbeat" in line:
            reached = "sealed"
        elif "delivered heartbeat" in line:
            reached = "delivered"
    return reached


@dataclass
class Lane:
    """One outbox and its worker, started and SIGKILLed until told to stop.

    A fifth of the runs are killed 0.05-1.5 s after the process starts (often while
    it starts up or opens the outbox); the others once it holds the outbox, after
    0-1 s (while it delivers, seals, marks, retries or maintains).
    """

    outbox: Outbox
    endpoint: str
    rng: random.Random
    kills: int = 0
    runs: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    killed_in: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        log_path = self.outbox.path.parent / "worker.log"
        while not stop.is_set():
            with open(log_path, "wb") as log:
                proc = start_worker(self.outbox.path, self.endpoint, *FAST_RETRY, stderr=log)
            try:
                self.runs += 1
                self._kill_later(proc, log_path)
                text = log_path.read_text(errors="replace")
                if proc.returncode == -signal.SIGKILL:
                    self.kills += 1
                    self.killed_in[phase(text)] += 1
                    continue
                self.exits[proc.returncode] += 1
                if proc.returncode not in (0, 1) or "Traceback" in text:
                    self.errors.append(f"exit {proc.returncode}: {text[-1500:]}")
            except Exception as e:  # noqa: BLE001 - reported by the test, never swallowed
                self.errors.append(f"lane: {type(e).__name__}: {e}")
                return
            finally:
                reap(proc)

    def _kill_later(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        if self.rng.random() < 0.2:
            deadline = time.monotonic() + self.rng.uniform(*KILL_AFTER)
        else:
            opened = time.monotonic() + 60
            while b" holds " not in log_path.read_bytes() and proc.poll() is None:
                if time.monotonic() > opened:
                    raise TimeoutError("the worker did not open its outbox within 60 s")
                time.sleep(0.01)
            deadline = time.monotonic() + self.rng.uniform(0.0, 1.0)
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)


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
    tmp_path: Path, real_collector: RealCollector, seed: int, say: Callable[[str], None]
) -> None:
    rng = random.Random(seed)
    soak = soak_seconds()
    where = f"HELIOS_PROOF_SEED={seed}"
    proxy = FaultProxy(
        real_collector.port,
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
            enough = kills >= MIN_KILLS and all(proxy.stats[f] for f in FAULTS)
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
                r = run_worker(lane.outbox.path, proxy.url, *FAST_RETRY)
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
    counted = real_collector.totals()
    lost, doubled, _ = compare(expected, counted)
    states = [lane.outbox.state() for lane in lanes]
    kills = sum(lane.kills for lane in lanes)
    expected_drops: Counter[str] = Counter()
    for r in results:
        expected_drops["invalid_name"] += r["invalid_calls"]
        expected_drops["storage_error"] += sum(c for _, _, c in r["refused_valid"])
        expected_drops.subtract(r["unstored"])
    figures: dict[str, Any] = {
        "seed": seed,
        "soak_seconds": soak,
        "storm_seconds": round(storm_seconds, 1),
        "instances": LANES,
        "writers": len(writers),
        "kills": kills,
        "worker_runs": sum(lane.runs for lane in lanes),
        "worker_exits": dict(sum((lane.exits for lane in lanes), Counter())),
        "killed_in": dict(sum((lane.killed_in for lane in lanes), Counter())),
        "heartbeats": sum(s.last_sequence for s in states),
        "track_calls": sum(r["calls"] for r in results),
        "events_tracked": sum(expected.values()),
        "events_counted": sum(counted.values()),
        "lost": lost,
        "doubled": doubled,
        "dropped_at_collector": real_collector.dropped(),
        "writer_refused_storage": expected_drops["storage_error"],
        "writer_unstored": sum(sum(r["unstored"].values()) for r in results),
        "faults": {f: proxy.stats[f] for f in FAULTS},
        "proxy_timeouts": proxy.stats["proxy_timeout"],
        "collector_answers": dict(proxy.answers),
    }
    write_results("kill_storm", figures)
    say("kill storm: " + summary(figures))

    where = f"{where} ({json.dumps(figures)})"
    assert kills >= MIN_KILLS, f"{where}: only {kills} SIGKILLs"
    missing_faults = [f for f in FAULTS if not proxy.stats[f]]
    assert not missing_faults, f"{where}: fault classes never chosen: {missing_faults}"
    problems = invariants(real_collector, states, expected=expected, answers=proxy.answers)
    for lane, state in zip(lanes, states, strict=True):
        mine = [r for r, w in zip(results, writers, strict=True) if w.outbox == lane.outbox.path]
        per_kind: Counter[str] = Counter()
        for (kind, _), n in tracked_totals(mine).items():
            per_kind[kind] += n
        info = real_collector.storage.instance(state.instance_id)
        stored = {} if info is None else {k: n for k, n in info.totals.items() if k != "dropped"}
        if stored != dict(per_kind):
            problems.append(f"instance {state.instance_id}: per kind {stored} != {dict(per_kind)}")
    drops = {k: n for k, n in expected_drops.items() if n}
    if real_collector.dropped() != drops:
        problems.append(f"drops at the collector {real_collector.dropped()} != refused {drops}")
    assert not problems, f"{where}:\n" + "\n".join(problems)
