"""Several processes tracking at once with no worker: WAL size against track-call stalls.

Why ``outbox.db.WAL_AUTOCHECKPOINT_PAGES`` is 10,000. A commit that pushes the WAL past
the autocheckpoint threshold runs a PASSIVE checkpoint inside that track call, and
while it writes the pages back and syncs the database file the other writers wait too.
SQLite starts the WAL over only when a checkpoint has caught up with the last commit,
which writers that never pause do not allow. So the threshold trades the worst stall
against how large the WAL grows when nobody else (the worker) checkpoints.

For each (rate, threshold) this script runs ``--writers`` processes that call
``track_command`` for ``--seconds`` — at full speed, or paced to ``--paced`` calls/s
each — while the parent samples the WAL size every 50 ms. It prints calls/s, p99.9 and
worst call latency, the peak WAL size and the calls that were not stored (a call that
waited past the busy timeout is refused and counted as ``storage_error``).

    python benchmarks/wal_pressure.py [--seconds 10] [--writers 4] [--paced 400]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from outbox import Telemetry, db, maintenance  # noqa: E402


def writer(path: str, seconds: float, pace: float, pages: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    t = Telemetry(db_path=path, enabled=True, environ={})
    t.track_command("warmup")
    conn = t._conn  # noqa: SLF001  # the benchmark sets the threshold under study
    assert conn is not None
    conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
    latencies: list[float] = []
    refused = 0
    start = time.perf_counter()
    end = start + seconds
    n = 0
    while (now := time.perf_counter()) < end:
        if pace:
            due = start + n / pace
            if due > now:
                time.sleep(due - now)
        a = time.perf_counter()
        refused += not t.track_command("sync")
        latencies.append(time.perf_counter() - a)
        n += 1
    latencies.sort()
    out.put((len(latencies), latencies[int(len(latencies) * 0.999)], latencies[-1], refused))


def run(folder: Path, writers: int, seconds: float, pace: float, pages: int) -> dict[str, float]:
    path = folder / f"wal-{pages}-{int(pace)}.db"
    Telemetry(db_path=path, enabled=True, environ={}).track_command("warmup")
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [
        mp.Process(target=writer, args=(str(path), seconds, pace, pages, out))
        for _ in range(writers)
    ]
    for p in procs:
        p.start()
    peak = 0
    while any(p.is_alive() for p in procs) and out.qsize() < writers:
        peak = max(peak, maintenance.file_sizes(path).wal)
        time.sleep(0.05)
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    calls = sum(r[0] for r in results)
    return {
        "calls_s": calls / seconds,
        "p999_ms": max(r[1] for r in results) * 1000,
        "worst_ms": max(r[2] for r in results) * 1000,
        "wal_mb": peak / 2**20,
        "refused": sum(r[3] for r in results),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--paced", type=float, default=400.0, help="calls/s per writer when paced")
    ap.add_argument(
        "--pages",
        default=f"1000,{db.WAL_AUTOCHECKPOINT_PAGES},0",
        help="autocheckpoint thresholds to compare (0 = never)",
    )
    args = ap.parse_args()
    thresholds = [int(x) for x in args.pages.split(",")]
    print(
        f"{args.writers} writer processes, {args.seconds:g} s each, no worker, "
        f"{os.cpu_count()} cpus; outbox default: {db.WAL_AUTOCHECKPOINT_PAGES} pages"
    )
    print(
        f"{'rate per writer':>16} {'autocheckpoint':>14} {'calls/s':>9} {'p99.9 ms':>9} "
        f"{'worst ms':>9} {'peak WAL MB':>12} {'not stored':>11}"
    )
    with tempfile.TemporaryDirectory(prefix="wal-pressure-") as tmp:
        for pace in (args.paced, 0.0):
            for pages in thresholds:
                r = run(Path(tmp), args.writers, args.seconds, pace, pages)
                rate = f"{pace:g}/s" if pace else "full speed"
                print(
                    f"{rate:>16} {pages or 'never':>14} {r['calls_s']:>9,.0f} "
                    f"{r['p999_ms']:>9.1f} {r['worst_ms']:>9.1f} {r['wal_mb']:>12.1f} "
                    f"{int(r['refused']):>11}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
