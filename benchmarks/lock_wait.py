"""How long the worker waits for the write lock while the app tracks at full speed.

Writer processes call ``Telemetry.track`` in a loop on one outbox (their wait for the
lock polls every 2 ms at most, ``db.retry_busy``). Meanwhile this process opens a
transaction every 10 ms, as the worker's steps do, in two ways side by side, in
alternating rounds on the same outbox:

- ``sqlite handler``: ``BEGIN IMMEDIATE`` waiting in SQLite's own busy handler (what
  the worker did before ``db.begin_immediate``; it sleeps up to 100 ms between tries);
- ``polling``: ``db.transaction`` (``db.begin_immediate``: polls like the track calls).

It prints, per way: transactions tried, timed out, and the wait's p50, p99 and
maximum; then the ratio of the timed-out shares. The date, the machine and the load
average are printed with the table.

    python benchmarks/lock_wait.py
    python benchmarks/lock_wait.py --writers 4 --timeout 0.3 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.collector_load import machine  # noqa: E402  (after the path is set)
from outbox import db  # noqa: E402

INSERT = "INSERT INTO events (kind, name, count, at) VALUES ('ui', 'bench', 1, 0)"


def sqlite_handler(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INSERT)
    conn.execute("COMMIT")


def polling(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        conn.execute(INSERT)


WAYS: dict[str, Callable[[sqlite3.Connection], None]] = {
    "sqlite handler": sqlite_handler,
    "polling": polling,
}


def measure(
    conn: sqlite3.Connection, way: Callable[[sqlite3.Connection], None], seconds: float
) -> tuple[int, list[float]]:
    """Transactions every 10 ms for ``seconds``: (timed out, waits of all tries)."""
    waits: list[float] = []
    failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            way(conn)
        except sqlite3.OperationalError as e:
            if not db.is_busy(e):
                raise
            failed += 1
        waits.append(time.monotonic() - t0)
        time.sleep(0.01)
    return failed, waits


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=3, help="tracking processes (default 3)")
    ap.add_argument("--timeout", type=float, default=1.0, help="busy timeout, s (default 1.0)")
    ap.add_argument("--seconds", type=float, default=5.0, help="per way and round (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "telemetry.db"
        db.connect(path).close()
        writers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.core.procs", "track", str(path), "100000000"]
                + ["command", "sync"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            for _ in range(a.writers)
        ]
        conn = db.connect(path, busy_timeout=a.timeout)
        results: dict[str, tuple[int, list[float]]] = {name: (0, []) for name in WAYS}
        try:
            time.sleep(1.0)  # the writers are at full speed
            for _ in range(a.rounds):
                for name, way in WAYS.items():
                    failed, waits = measure(conn, way, a.seconds)
                    before_failed, before_waits = results[name]
                    results[name] = (before_failed + failed, before_waits + waits)
            tracked = conn.execute("SELECT count(*) FROM events WHERE kind = 'command'")
            calls = int(tracked.fetchone()[0])
        finally:
            for w in writers:
                w.kill()
                w.wait()
            conn.close()

    print(
        f"lock wait: {machine()}; {a.writers} tracking processes ({calls:,} track calls), "
        f"busy timeout {a.timeout:g} s, {a.rounds} x {a.seconds:g} s per way"
    )
    print(f"{'way':<16}{'tried':>7}{'timed out':>11}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    share = {}
    for name, (failed, waits) in results.items():
        share[name] = failed / max(1, len(waits))
        print(
            f"{name:<16}{len(waits):>7}{failed:>11}{pct(waits, 0.5) * 1e3:>9.1f}"
            f"{pct(waits, 0.99) * 1e3:>9.1f}{max(waits) * 1e3:>9.1f}"
        )
    old, new = share["sqlite handler"], share["polling"]
    ratio = (
        "no timeouts either way"
        if old == new == 0
        else (f"{old / new:.1f}x" if new else f"{old:.1%} vs none")
    )
    print(f"timed-out share, sqlite handler / polling: {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
