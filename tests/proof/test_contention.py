"""Contention: 4 writers at full speed while the worker compacts, seals and purges a big backlog.

One outbox with a heartbeat left pending (the receiver answered 503) and 600,000
rows over 30 days behind it. Four writer processes track at full speed (no pause)
the whole time, while the real worker command line runs, one after the other:

1. against a receiver answering 503: the pending heartbeat stays, so the worker
   compacts the backlog (120 windows of 5,000 rows, each a read and a short write
   transaction);
2. against the real collector: it delivers the pending heartbeat, seals everything
   written since (read in windows), delivers it, deletes the rows that heartbeat
   covers in chunks, and vacuums;
3. and 4. the same again, over what the writers added meanwhile.

One of the writers is impatient (a busy timeout of 5 ms): its calls are refused whenever
another writer or the worker holds the lock longer. Then the writers stop and a clean
worker drains the outbox. Must hold, exactly: the
collector counts what was preloaded plus what every track call that returned True
added, less what the worker's size cap dropped (it logs each drop: ``dropped the
oldest N counts``), and no key more than that: collector + over_capacity == tracked;
its ``dropped.over_capacity`` is those drops plus the counts track calls refused
because the outbox was over its size; its ``dropped.storage_error`` is every other
count a track call refused (the outbox stayed locked past the busy timeout), less what
a writer still held in memory when it exited. No writer saw an exception; no gap, no
rejected heartbeat, integrity ok.

On a slow machine the four writers outpace compaction (the rows they add while a pass
runs are folded by the next one), and the worker's size cap (50,000 unsent rows) drops
the oldest: that is the cap doing its job, and it is accounted for, not excluded.

Each writer times every call; the worst stall and the 99.9th percentile are printed
and written to ``tests/proof/.results/contention.json`` (never asserted: speed belongs
to benchmarks).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outbox import maintenance
from tests.proof.harness import (
    Writer,
    expected_drops,
    invariants,
    record,
    size_cap_drops,
    tracked_totals,
)
from tests.proof.writer import NAMES
from tests.support.collector import Collector
from tests.support.faultproxy import FaultProxy
from tests.support.outboxes import Outbox
from tests.support.processes import once, run_worker, worker_env

pytestmark = pytest.mark.slow

WRITERS = 4
BACKLOG = int(os.environ.get("HELIOS_PROOF_BACKLOG", "600000"))
DAY = 86400
RUN = ("--retry-attempts", "1", "--connect-timeout", "2", "--read-timeout", "30")
#: The busy timeout of the first writer (the others wait the library's default): its calls
#: are refused whenever the lock stays taken longer, so that refusals (``storage_error``)
#: and the size cap's drops are accounted for in the same run.
IMPATIENT = 0.005
#: Each worker run's limit: a slow machine takes minutes for a pass over the backlog.
RUN_TIMEOUT = 1800


def preload(outbox: Outbox, rng: random.Random, now: int) -> None:
    keys = [(k, n) for k, names in NAMES.items() for n in names]
    rows = []
    for _ in range(BACKLOG):
        kind, name = rng.choice(keys)
        rows.append((kind, name, rng.randint(1, 3), now - rng.randrange(30 * DAY)))
    rows.sort(key=lambda r: r[3])  # in time order, as tracked
    for i in range(0, len(rows), 100_000):
        outbox.add_rows(rows[i : i + 100_000])


def test_contention(
    tmp_path: Path, collector: Collector, seed: int, say: Callable[[str], None]
) -> None:
    rng = random.Random(seed)
    where = f"HELIOS_PROOF_SEED={seed}"
    now = int(time.time())
    outbox = Outbox(tmp_path / "outbox" / "telemetry.db")
    proxy = FaultProxy(collector.port, seed=seed, weights={"503": 1}).start()

    def run(timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run_worker(*once(outbox.path, proxy.url, *RUN), env=worker_env(), timeout=timeout)

    writers = [
        Writer(
            outbox.path,
            rng.randrange(2**31),
            tmp_path / "writers",
            busy_timeout=IMPATIENT if i == 0 else None,
        )
        for i in range(WRITERS)
    ]
    runs: list[dict[str, Any]] = []
    capped = 0  # counts the worker's size cap dropped, from its logs
    try:
        outbox.add_rows([("command", "sync", 1, now - 60)])
        r = run()
        assert r.returncode == 1 and outbox.state().pending, f"{where}: {r.stderr}"
        preload(outbox, rng, now)
        started, started_wall = time.monotonic(), time.time()
        for w in writers:
            w.start()
        time.sleep(0.5)  # the writers are at full speed before the worker starts
        for i in range(4):
            down = i % 2 == 0
            proxy.set_weights({"503": 1} if down else {"pass": 1})
            t0 = time.monotonic()
            r = run()
            capped += size_cap_drops(r.stderr)
            runs.append(
                {
                    "receiver": "503" if down else "collector",
                    "exit": r.returncode,
                    "started_s": round(t0 - started, 2),  # since the writers started
                    "seconds": round(time.monotonic() - t0, 2),
                    "rows_after": outbox.rows(),
                    "size_cap_dropped": size_cap_drops(r.stderr),
                    "wal_mb_after": round(maintenance.file_sizes(outbox.path).wal / 1e6, 1),
                }
            )
            assert r.returncode == (1 if down else 0), f"{where}: run {i}: {r.stderr[-3000:]}"
            assert "Traceback" not in r.stderr, f"{where}: run {i}: {r.stderr[-3000:]}"
        results = [w.finish() for w in writers]
        writing_seconds = time.monotonic() - started
        proxy.set_weights({"pass": 1})
        r = run()
        capped += size_cap_drops(r.stderr)
        assert r.returncode == 0, f"{where}: the drain failed: {r.stderr[-3000:]}"
        proxy.wait_idle()
    finally:
        for w in writers:
            w.kill()
        proxy.stop()

    for res in results:
        assert res["exception_count"] == 0, f"{where}: a track call raised: {res['exceptions']}"
    drops = expected_drops(results)
    refused_over_capacity = drops.pop("over_capacity", 0)
    if capped + refused_over_capacity:
        drops["over_capacity"] = capped + refused_over_capacity
    expected = Counter(outbox.written)  # the preload
    expected.update(tracked_totals(results))
    latencies = [res["latency"] for res in results]
    figures = {
        "seed": seed,
        "backlog_rows": BACKLOG,
        "writers": WRITERS,
        "writing_seconds": round(writing_seconds, 1),
        "track_calls": sum(res["calls"] for res in results),
        "calls_per_second": round(sum(res["calls"] for res in results) / writing_seconds),
        "returned_false": sum(res["calls_false"] for res in results),
        "refused_counts_storage": sum(c for res in results for *_, c in res["refused_storage"]),
        "refused_counts_over_capacity": refused_over_capacity,
        "unstored_at_exit": sum(sum(res["unstored"].values()) for res in results),
        "size_cap_dropped": capped,
        "events_expected": sum(expected.values()),
        "events_counted": sum(collector.totals().values()),
        "dropped_at_collector": collector.dropped(),
        "worker_runs": runs,
        "worst_stall_ms": round(max(x["max"] for x in latencies) * 1000, 2),
        "p999_ms": [round(x["p999"] * 1000, 3) for x in latencies],
        "p99_ms": [round(x["p99"] * 1000, 3) for x in latencies],
        "max_ms": [round(x["max"] * 1000, 2) for x in latencies],
        "worst_call": [x["worst_call"] for x in latencies],
        "worst_at_s": [round(x["worst_at"] - started_wall, 2) for x in latencies],
        "first_call_ms": [round(x["first"] * 1000, 2) for x in latencies],
        "worst_stall_after_first_call_ms": round(
            max(x["max_after_first"] for x in latencies) * 1000, 2
        ),
    }
    record("contention", **figures)
    say(
        f"contention: seed {seed}, {figures['track_calls']} track calls by {WRITERS} writers "
        f"in {figures['writing_seconds']} s over a {BACKLOG}-row backlog, "
        f"{figures['returned_false']} returned False, worst stall {figures['worst_stall_ms']} ms "
        f"({figures['worst_stall_after_first_call_ms']} ms after the first call), "
        f"p99.9 {max(figures['p999_ms'])} ms; runs {json.dumps(runs)}"
    )

    where = f"{where} ({json.dumps(figures)})"
    problems = invariants(
        collector, [outbox.state()], expected=dict(expected), over_capacity=capped
    )
    if collector.dropped() != drops:
        problems.append(f"drops at the collector {collector.dropped()} != expected {drops}")
    assert not problems, f"{where}:\n" + "\n".join(problems)
