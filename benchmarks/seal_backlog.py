"""How the worker copes with a large unsealed backlog: seal time, track-call stalls, memory.

For each backlog size N this script

1. builds an outbox with N unsealed events (200 names over 30 days, one INSERT..SELECT
   from a recursive CTE) and a copy of it;
2. starts a *writer* process that calls ``Telemetry.track_api_call`` in a loop and
   records the latency of every call: its worst latency during a worker step is the
   longest time that step held the write lock;
3. runs the worker's steps in a separate *worker* process, as ``worker.loop`` calls
   them: the bare GROUP BY (the floor), the seal (``plan_seal`` + ``commit_seal``),
   ``purge`` of the covered rows once the heartbeat is settled, and, on the copy,
   ``compact``, ``enforce_capacity`` and a checkpoint; that process reports its
   peak RSS (``VmHWM``) after each step.

Usage::

    python benchmarks/seal_backlog.py                     # 100k, 1M, 5M
    python benchmarks/seal_backlog.py --sizes 100000,1000000

Targets: seal time close to the GROUP BY floor (~1 µs per row), worst track-call
stall under 50 ms at 5M rows, worker RSS flat and under 60 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outbox.maintenance import DEFAULT_CHUNK  # noqa: E402  (after the path is set)

T_START = 1_795_600_800 - 30 * 86400  # 30 days before 2026-11-25T10:00Z
NAMES = 200
PAUSE = 0.3  # seconds between worker steps, so that each stall is attributed to one step
IDLE = 5.0  # seconds the writer runs alone first: the machine's own noise, for comparison


def build(path: Path, n: int) -> float:
    """An outbox with ``n`` unsealed events; returns the seconds it took."""
    from outbox import db

    t = time.perf_counter()
    conn = db.connect(path)
    conn.execute("PRAGMA cache_size = -65536")
    with db.transaction(conn):
        conn.execute(
            """
            WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?1)
            INSERT INTO events (kind, name, count, at)
            SELECT CASE i % 10 WHEN 0 THEN 'command' WHEN 1 THEN 'ui' ELSE 'api' END,
                   'name' || (i * 7919 % ?2) || '.list',
                   1 + i % 3,
                   ?3 + (i * (30 * 86400)) / ?1
            FROM seq
            """,
            (n, NAMES, T_START),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t


# -- the writer process -------------------------------------------------------------------


def writer(path: str, out: str) -> None:
    """Track one event about every millisecond until SIGTERM; dump (start, latency, ok)."""
    from outbox import Telemetry

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    t = Telemetry(db_path=path, enabled=True, environ={})
    samples: list[tuple[float, float, bool]] = []
    t.track_api_call("bench.warmup")
    Path(out + ".ready").touch()
    while not stop:
        start = time.time()
        p = time.perf_counter()
        ok = t.track_api_call("bench.writer")
        samples.append((start, time.perf_counter() - p, ok))
        time.sleep(0.001)
    t.close()
    Path(out).write_text(json.dumps(samples))


# -- the worker process -------------------------------------------------------------------


def _rss() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc/self/status."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def worker_steps(mode: str, path: str, chunk: int, pause: float) -> None:
    """Run the worker's steps of ``mode`` (``seal`` or ``compact``); one JSON line per step.

    The steps are the worker's own: ``Worker.maintain`` (compaction, the size cap,
    purge, checkpoints), with a pause between steps so that the writer's stalls can
    be told apart.
    """
    import contextlib

    from outbox import db, heartbeats, maintenance
    from outbox.config import Config
    from worker.loop import Worker
    from worker.options import Options

    marks: dict[str, float] = {}
    # The longest write transaction of each step: how long it held the lock, measured
    # where it is held (the writer's stall adds its own scheduling and polling to this).
    held: dict[str, float] = {}
    current = ["seal"]
    plain = db.transaction

    @contextlib.contextmanager
    def timed(conn: sqlite3.Connection) -> Any:
        t0 = time.perf_counter()
        with plain(conn) as c:
            yield c
        took = time.perf_counter() - t0
        held[current[0]] = max(held.get(current[0], 0.0), took)

    maintenance.transaction = heartbeats.transaction = timed  # type: ignore[assignment]

    def report(step: str, start: float, end: float, **extra: Any) -> None:
        rss, peak = _rss()
        line = {"step": step, "start": start, "end": end, "rss": rss, "peak": peak, **extra}
        print(json.dumps(line), flush=True)

    def hook(step: str) -> None:
        marks[step] = time.time()
        if step.startswith("before_"):
            current[0] = step.removeprefix("before_").replace("seal_commit", "seal")
        if step in ("before_compact", "before_capacity", "before_purge", "before_checkpoint"):
            time.sleep(PAUSE)
            marks[step + "_resumed"] = time.time()

    if mode == "floor":  # the bare GROUP BY, in its own process (its sorter is not bounded)
        conn = sqlite3.connect(path)
        s = time.time()
        rows = conn.execute(
            "SELECT kind, name, at / 86400, sum(count), min(at) FROM events "
            "GROUP BY kind, name, at / 86400"
        ).fetchall()
        report("floor", s, time.time(), groups=len(rows))
        return
    report(f"baseline_{mode}", time.time(), time.time())
    config = Config.from_env(
        {"HELIOS_TELEMETRY_ENABLED": "true", "HELIOS_VERSION": "bench"},
        db_path=Path(path),
        endpoint="http://127.0.0.1:9/api/instances/heartbeat",
    )
    w = Worker(config, Options(chunk=chunk, chunk_pause=pause), hook=hook)
    w.open()
    conn = w.conn
    if mode == "seal":
        s = time.time()
        sealed = w.seal(s)
        assert sealed is not None
        commit_ms = (marks["after_seal_commit"] - marks["before_seal_commit"]) * 1000
        report("seal", s, time.time(), commit_ms=commit_ms, held_ms=held.get("seal", 0) * 1000)
        heartbeats.settle(conn, sealed, status="sent", now=int(time.time()), attempts=1)
    w.maintain(time.time())
    spans = [
        ("compact", "before_compact", "before_capacity"),
        ("capacity", "before_capacity", "before_purge"),
        ("purge", "before_purge", "before_checkpoint"),
        ("checkpoint", "before_checkpoint", "checkpoint"),
    ]
    for name, a, b in spans:
        if (mode == "seal") == (name in ("purge", "checkpoint")):
            report(name, marks[a + "_resumed"], marks[b], held_ms=held.get(name, 0) * 1000)
    w.close()


# -- the driver ---------------------------------------------------------------------------


def run_size(n: int, folder: Path, chunk: int, pause: float) -> dict[str, Any]:
    path, copy = folder / f"bench-{n}.db", folder / f"bench-{n}-copy.db"
    for p in (path, copy):
        for suffix in ("", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)
    built = build(path, n)
    shutil.copy(path, copy)

    results: dict[str, Any] = {"rows": n, "build_s": built}
    steps: dict[str, dict[str, Any]] = {}
    for mode, target in (("floor", copy), ("seal", path), ("compact", copy)):
        # A writer tracks into the outbox the worker works on; its worst latency
        # during a step is the longest that step kept it waiting for the lock.
        wout = str(folder / f"writer-{n}-{mode}.json")
        Path(wout + ".ready").unlink(missing_ok=True)
        wp = subprocess.Popen([sys.executable, __file__, "--writer", str(target), wout])
        while not Path(wout + ".ready").exists():
            time.sleep(0.01)
        time.sleep(0.3)
        if mode == "floor":  # the control: the writer alone, nothing else on this outbox
            idle_start = time.time()
            time.sleep(IDLE)
            idle = json.dumps(
                {"step": "idle", "start": idle_start, "end": time.time(), "rss": 0.0, "peak": 0.0}
            )
        child = subprocess.run(
            [sys.executable, __file__, "--worker", mode, str(target), str(chunk), str(pause)],
            capture_output=True,
            text=True,
            check=True,
        )
        time.sleep(0.3)
        wp.send_signal(signal.SIGTERM)
        wp.wait()
        samples = [tuple(x) for x in json.loads(Path(wout).read_text())]
        lines = child.stdout.splitlines() + ([idle] if mode == "floor" else [])
        for line in lines:
            d = json.loads(line)
            # a call belongs to every step its wait overlapped
            during = [
                (lat, ok)
                for (start, lat, ok) in samples
                if start <= d["end"] and start + lat >= d["start"]
            ]
            lats = sorted(lat for lat, _ in during)
            d["worst_ms"] = lats[-1] * 1000 if lats else None
            d["p99_ms"] = lats[int(len(lats) * 0.99)] * 1000 if lats else None
            d["over_20ms"] = sum(1 for lat in lats if lat > 0.020)
            d["calls"] = len(during)
            d["failed"] = sum(1 for _, ok in during if not ok)
            steps[d["step"]] = d
        results[f"writer_calls_{mode}"] = len(samples)
    results["steps"] = steps
    for p in (path, copy):
        for suffix in ("", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000,5000000")
    ap.add_argument("--dir", help="where to build the outboxes (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--writer", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per maintenance txn")
    ap.add_argument("--pause", type=float, default=0.025, help="seconds between maintenance txns")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        writer(*args.writer)
        return 0
    if args.worker:
        mode, path, chunk, pause = args.worker
        worker_steps(mode, path, int(chunk), float(pause))
        return 0
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="seal-backlog-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus, outboxes in {folder}"
    )
    all_results = []
    for n in (int(x) for x in args.sizes.split(",")):
        r = run_size(n, folder, args.chunk, args.pause)
        all_results.append(r)
        if args.json:
            print(json.dumps(r))
    print_table(all_results)
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def print_table(results: list[dict[str, Any]]) -> None:
    """Two tables: how long each step took, then how long it held the write lock (its
    longest transaction) and the worst track-call stall meanwhile. ``idle`` (the writer
    alone) and ``floor`` (a read-only GROUP BY next to it) are the machine's own noise."""

    def table(cols: list[tuple[str, int]], rows: list[list[str]]) -> None:
        head = " ".join(f"{name:>{width}}" for name, width in cols)
        print(head)
        print("-" * len(head))
        for cells in rows:
            print(" ".join(f"{c:>{width}}" for c, (_, width) in zip(cells, cols, strict=True)))

    times, locks = [], []
    for r in results:
        steps = r["steps"]
        peak = max(d["peak"] for name, d in steps.items() if name not in ("idle", "floor"))
        times.append(
            [
                f"{r['rows']:,}",
                f"{_secs(steps, 'floor'):.2f}",
                f"{_secs(steps, 'seal'):.2f}",
                f"{_secs(steps, 'seal') / r['rows'] * 1e6:.2f}",
                f"{_secs(steps, 'purge'):.2f}",
                f"{_secs(steps, 'compact'):.2f}",
                f"{peak:.1f}",
            ]
        )
        locks.append(
            [
                f"{r['rows']:,}",
                _ms(steps, "idle"),
                _ms(steps, "floor"),
                *(f"{_held(steps, s)} / {_ms(steps, s)}" for s in ("seal", "purge", "compact")),
            ]
        )
    table(
        [("rows", 11), ("floor s", 7), ("seal s", 7), ("µs/row", 6), ("purge s", 7)]
        + [("compact s", 9), ("worker RSS MB", 13)],
        times,
    )
    print()
    table(
        [("rows", 11), ("stall idle", 10), ("stall floor", 11)]
        + [(f"{s}: held / stall", 24) for s in ("seal", "purge", "compact")],
        locks,
    )


def _held(steps: dict[str, dict[str, Any]], step: str) -> str:
    v = steps[step].get("held_ms")
    return "-" if v is None else f"{v:.1f} ms"


def _ms(steps: dict[str, dict[str, Any]], step: str) -> str:
    v = steps[step]["worst_ms"]
    return "-" if v is None else f"{v:.1f} ms"


def _secs(steps: dict[str, dict[str, Any]], step: str) -> float:
    return float(steps[step]["end"] - steps[step]["start"])


if __name__ == "__main__":
    raise SystemExit(main())
