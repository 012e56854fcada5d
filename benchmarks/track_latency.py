"""Track-call latency: this project against the raw SQLite floor and other SDKs.

Prints p50/p99/p99.9 per call and calls/s for:

* ``track_api_call`` of this project (one durable row per call), and the same call in an
  app that never opted in (off by default, no outbox file);
* **the floor**: stdlib ``sqlite3``, WAL, ``synchronous=NORMAL``, a plain 5-column
  table (``INTEGER PRIMARY KEY AUTOINCREMENT``, no CHECKs), ``BEGIN; INSERT; COMMIT``
  per call — what any durable per-call design pays, and what ratios are taken to;
* the same INSERT on the outbox's own file, schema and connection settings (what
  the schema costs over the floor);
* sqlite-utils' ``table.insert`` on the same schema (why the hot path, and the
  rest of the package, use stdlib ``sqlite3``; installed by ``make bench`` only);
* posthog's ``capture`` and segment's ``track`` with sending off (in-memory queue,
  lost on exit);
* persist-queue's ``SQLiteAckQueue.put`` (durable, like ours);

then 4 processes tracking into one outbox at once. Contenders run interleaved in
blocks of 1,000 calls, so that machine noise hits all of them alike; ratios are to
the floor. Aims: p50 at most 1.2 times the floor, p99.9 at most 0.5 ms.

    python benchmarks/track_latency.py [--calls 20000] [--rounds 5]

posthog, segment-analytics-python and persist-queue come from the `bench`
dependency group (``make bench`` installs them); missing ones are skipped.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from outbox import Telemetry, db  # noqa: E402

Call = Callable[[], object]
FLOOR = "floor: plain table, BEGIN;INSERT;COMMIT"
BLOCK = 1000


def timed(fn: Call, n: int) -> list[int]:
    out = [0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def contenders(folder: Path) -> dict[str, Call]:
    found: dict[str, Call] = {}
    t = Telemetry(db_path=folder / "ours.db", enabled=True, environ={})
    t.track_api_call("users.list")
    found["helios track_api_call"] = lambda: t.track_api_call("users.list")
    # What an app that never opted in pays: no outbox, so the call looks for the file
    # (a stat on every call: another process may create it when sharing is switched on).
    never = Telemetry(db_path=folder / "never" / "telemetry.db", environ={})
    never.track_api_call("users.list")
    found["helios, off by default, no outbox"] = lambda: never.track_api_call("users.list")

    sql = "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)"
    plain = sqlite3.connect(folder / "floor.db", isolation_level=None)
    plain.execute("PRAGMA journal_mode = WAL")
    plain.execute("PRAGMA synchronous = NORMAL")
    plain.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
        "name TEXT NOT NULL, count INTEGER NOT NULL, at INTEGER NOT NULL)"
    )

    def floor() -> None:
        plain.execute("BEGIN")
        plain.execute(sql, ("api", "users.list", 1, int(time.time())))
        plain.execute("COMMIT")

    found[FLOOR] = floor
    raw = db.connect(folder / "schema.db", wal_size_limit=None)
    found["one INSERT, outbox schema"] = lambda: raw.execute(
        sql, ("api", "users.list", 1, int(time.time()))
    )

    try:
        import sqlite_utils

        table = sqlite_utils.Database(db.connect(folder / "sqlite-utils.db"))["events"]
        found["sqlite-utils table.insert"] = lambda: table.insert(  # type: ignore[union-attr]
            {"kind": "api", "name": "users.list", "count": 1, "at": int(time.time())}
        )
    except ImportError as e:  # a contender from the bench group
        print(f"(sqlite-utils skipped: {e})", file=sys.stderr)

    try:
        import posthog

        ph = posthog.Posthog("phc_benchmark", send=False, max_queue_size=10**8, sync_mode=False)
        found["posthog capture (memory)"] = lambda: ph.capture("users.list", distinct_id="instance")
    except Exception as e:  # noqa: BLE001 - optional contender
        print(f"(posthog skipped: {e})", file=sys.stderr)
    try:
        from segment.analytics import Client as Segment

        sg = Segment(write_key="benchmark", send=False, max_queue_size=10**8)
        found["segment track (memory)"] = lambda: sg.track("instance", "users.list")
    except Exception as e:  # noqa: BLE001
        print(f"(segment skipped: {e})", file=sys.stderr)
    try:
        from persistqueue import SQLiteAckQueue

        q = SQLiteAckQueue(str(folder / "pq"), auto_commit=True, multithreading=True)
        found["persist-queue SQLiteAckQueue.put"] = lambda: q.put({"api": "users.list"})
    except Exception as e:  # noqa: BLE001
        print(f"(persist-queue skipped: {e})", file=sys.stderr)
    return found


def _writer(path: str, n: int, start_at: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    t = Telemetry(db_path=path, enabled=True, environ={})
    t.track_api_call("warm.up")
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    lat = timed(lambda: t.track_api_call("users.list"), n)
    queue.put((time.perf_counter() - t0, sorted(lat), t.unstored))


def four_processes(folder: Path, n: int) -> None:
    path = str(folder / "four.db")
    Telemetry(db_path=path, enabled=True, environ={}).track_api_call("warm.up")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=_writer, args=(path, n, start_at, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    lost = sum(sum(r[2].values()) for r in results)
    print(f"\n4 processes x {n:,} calls into one outbox (2 cores)")
    print(
        f"{'aggregate calls/s':>20} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max ms':>7} "
        f"{'not stored':>10}"
    )
    print(
        f"{4 * n / wall:>20,.0f} {pct(lat, 0.5):>8.1f} {pct(lat, 0.99):>8.1f} "
        f"{pct(lat, 0.999):>9.1f} {lat[-1] / 1e6:>7.2f} {lost:>10}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000, help="calls per contender per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--processes-calls", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="track-bench-") as tmp:
        folder = Path(tmp)
        found = contenders(folder)
        samples: dict[str, list[int]] = {name: [] for name in found}
        walls: dict[str, float] = dict.fromkeys(found, 0.0)
        for fn in found.values():
            timed(fn, 2000)  # warm up: caches, statements, first WAL frames
        for _ in range(args.rounds * max(1, args.calls // BLOCK)):
            for name, fn in found.items():  # alternating blocks: noise hits all alike
                t0 = time.perf_counter()
                samples[name] += timed(fn, BLOCK)
                walls[name] += time.perf_counter() - t0
        floor = statistics.median(samples[FLOOR]) / 1000
        print(
            f"track-call latency, {args.rounds} rounds x {args.calls:,} calls in blocks of "
            f"{BLOCK:,}, "
            f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} cores"
        )
        print(
            f"{'contender':40} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'calls/s':>10} "
            f"{'p50 / floor':>11}"
        )
        for name, lat in samples.items():
            lat.sort()
            print(
                f"{name:40} {pct(lat, 0.5):>8.1f} {pct(lat, 0.99):>8.1f} {pct(lat, 0.999):>9.1f} "
                f"{len(lat) / walls[name]:>10,.0f} {pct(lat, 0.5) / floor:>11.2f}"
            )
        four_processes(folder, args.processes_calls)
    os._exit(0)  # posthog/segment consumer threads would otherwise keep the process alive


if __name__ == "__main__":
    raise SystemExit(main())
