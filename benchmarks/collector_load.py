"""Load on the collector over loopback: heartbeats/s and latency with 64 concurrent clients.

The collector runs as its own process (``python -m collector``), exactly as an
operator starts it; the clients are threads, each with its own keep-alive connection.
Bodies are built before the clock starts (by the outbox's own payload code): a
fleet of instances, each heartbeat 4-40 names over one or two UTC days, and a
share of them sent twice (a worker retrying after a lost answer), so the
duplicate path is measured too. Each request carries its instance's secret
(``Authorization: Bearer``), as the worker sends it. Every answer is checked: 200
accepted/duplicate as expected, anything else is counted as an error.

    python benchmarks/collector_load.py                      # SQLite and PostgreSQL
    python benchmarks/collector_load.py --backend sqlite --heartbeats 20000
    python benchmarks/collector_load.py --pg-dsn postgresql://app:pw@127.0.0.1:5432/bench

Without ``--pg-dsn`` a throwaway PostgreSQL cluster is made in a temp dir, as the tests
make theirs (``tests/support/postgres.py``: ``initdb`` on the PATH or in Debian's
``/usr/lib/postgresql/*/bin``; as root its binaries run via ``runuser -u postgres``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from outbox.contract import bearer, encode  # noqa: E402  (after the path is set)
from outbox.payload import Aggregate, build_payload  # noqa: E402
from tests.support import postgres  # noqa: E402

API = [
    "users.list",
    "users.get",
    "users.create",
    "users.update",
    "groups.list",
    "groups.get",
    "groups.members.list",
    "roles.list",
    "audit.list",
    "devices.list",
    "devices.get",
    "licenses.get",
    "settings.get",
    "settings.update",
    "reports.list",
    "reports.get",
]
COMMANDS = ["sync", "deploy", "export", "users.import", "backup", "reindex"]
UI = ["bulk_edit", "export_csv", "column_sort", "filter.save", "dark_mode", "search"]


@dataclass
class Result:
    backend: str
    clients: int
    sent: int
    accepted: int
    duplicates: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float  # seconds of CPU the collector process used
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def make_bodies(n: int, duplicate_share: float, seed: int = 7) -> tuple[list[bytes], int]:
    """``n`` bodies, about ``duplicate_share`` of them resends: (bodies, distinct count)."""
    rng = random.Random(seed)
    # A fleet that mostly sends in order: about two heartbeats per instance.
    instances = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(n // 2, 1))]
    sequence = dict.fromkeys(instances, 0)
    uniques = int(n / (1 + duplicate_share))
    bodies: list[bytes] = []
    # Instances are picked first and numbered in that order, so that each one's
    # sequence arrives mostly in order (64 requests in flight can still overtake).
    for iid in [rng.choice(instances) for _ in range(uniques)]:
        sequence[iid] += 1
        day = date(2026, 11, 25) - timedelta(days=rng.randrange(30))
        rows = []
        for kind, names in (("api", API), ("command", COMMANDS), ("ui", UI)):
            for name in rng.sample(names, rng.randint(1, min(len(names), 14))):
                for d in sorted({day, day - timedelta(days=rng.randrange(2))}):
                    rows.append(Aggregate(kind, name, d, rng.randint(1, 500)))  # type: ignore[arg-type]
        payload = build_payload(
            rows,
            dropped={},
            heartbeat_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            instance_id=iid,
            sequence=sequence[iid],
            period_start=f"{day - timedelta(days=1)}T10:00:00Z",
            period_end=f"{day}T10:00:00Z",
            version=rng.choice(["1.4.2", "1.5.0", "1.5.1"]),
            edition=rng.choice(["community", "community", "licensed"]),
        )
        bodies.append(encode(payload))
    # Resends (a worker retrying after a lost answer) come after their original.
    keyed = [(float(i), b) for i, b in enumerate(bodies)]
    for _ in range(n - uniques):
        i = rng.randrange(len(bodies))
        keyed.append((rng.uniform(i, len(bodies)), bodies[i]))
    keyed.sort(key=lambda kb: kb[0])
    return [b for _, b in keyed], uniques


def authorization(instance_id: bytes) -> str:
    """A fixed secret per instance (a real outbox makes a random one)."""
    return bearer("bench-" + hashlib.sha256(instance_id).hexdigest()[:40])


def load(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], dict[str, int]]:
    """Send ``bodies`` from ``clients`` threads, each with its own keep-alive connection.

    (``http.client`` in threads costs ~0.25 ms of client CPU per request here;
    ``httpx.AsyncClient`` with 64 connections cost ~5 ms, which measured the client.)
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    tally = {"accepted": 0, "duplicate": 0, "error": 0}
    next_index = itertools.count()  # atomic under the GIL
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine: list[float] = []
        counts = dict.fromkeys(tally, 0)
        while (i := next(next_index)) < len(bodies):
            body = bodies[i]
            hid = body[body.index(b'"heartbeat_id":"') + 16 :][:36].decode()
            iid = body[body.index(b'"instance_id":"') + 15 :][:36]
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": hid,
                "Authorization": authorization(iid),
            }
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/instances/heartbeat", body=body, headers=headers)
                r = conn.getresponse()
                answer = r.read()
                status = json.loads(answer).get("status") if r.status == 200 else None
            except (OSError, http.client.HTTPException, ValueError):
                status = None
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            mine.append(time.perf_counter() - t)
            counts[status if status in ("accepted", "duplicate") else "error"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, n in counts.items():
                tally[k] += n

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, tally


@contextlib.contextmanager
def collector(db: str, *extra: str) -> Iterator[tuple[str, int]]:
    cmd = [
        sys.executable,
        "-m",
        "collector",
        "--db",
        db,
        "--port",
        "0",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if "POST " in line:
                url = line.split("POST ", 1)[1].strip().removesuffix("/api/instances/heartbeat")
                break
        if url is None:
            raise SystemExit(f"the collector did not start: {' '.join(cmd)}")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a free port (durable settings: fsync on)."""
    try:
        with postgres.throwaway_cluster(durable=True, prefix="collector-bench-pg-") as pg:
            pg.sql("CREATE ROLE bench LOGIN PASSWORD 'bench-pw'")
            pg.sql("CREATE DATABASE bench OWNER bench")
            yield pg.dsn("bench", "bench-pw", "bench")
    except postgres.PostgresUnavailable as e:
        raise SystemExit(f"collector_load: {e}\n(or pass --pg-dsn, or --backend sqlite)") from e


def run(
    backend: str, db: str, bodies: list[bytes], warmup: list[bytes], clients: int, extra: list[str]
) -> Result:
    with collector(db, *extra) as (url, pid):
        load(url, warmup, clients)  # new connections, first pages of the database
        server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        seconds, latencies, tally = load(url, bodies, clients)
        server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
    return Result(
        backend,
        clients,
        len(bodies),
        tally["accepted"],
        tally["duplicate"],
        tally["error"],
        seconds,
        latencies,
        server_cpu,
        client_cpu,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--heartbeats", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of resends")
    parser.add_argument("--pg-dsn", help="use this PostgreSQL database instead of a new cluster")
    parser.add_argument("collector_args", nargs="*", help="extra outbox-collector options")
    args = parser.parse_args()

    bodies, uniques = make_bodies(args.heartbeats, args.duplicates)
    warmup, _ = make_bodies(args.clients * 8, 0.0, seed=8)
    size = statistics.mean(len(b) for b in bodies)
    print(
        f"{len(bodies)} heartbeats ({uniques} distinct, {len(bodies) - uniques} resent), "
        f"{size / 1024:.1f} KiB average body, {args.clients} concurrent clients, "
        f"{os.cpu_count()} CPUs\n"
    )
    results = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(
                run(
                    "sqlite",
                    str(Path(tmp) / "c.db"),
                    bodies,
                    warmup,
                    args.clients,
                    args.collector_args,
                )
            )
    if args.backend in ("postgres", "both"):
        if args.pg_dsn:
            results.append(
                run("postgres", args.pg_dsn, bodies, warmup, args.clients, args.collector_args)
            )
        else:
            with throwaway_postgres() as dsn:
                results.append(
                    run("postgres", dsn, bodies, warmup, args.clients, args.collector_args)
                )
    head = (
        f"| {'backend':8} | {'heartbeats/s':>12} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'accepted':>8} | {'duplicate':>9} | {'errors':>6} | {'seconds':>7} | "
        f"{'server CPU ms/hb':>16} | {'client CPU ms/hb':>16} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c) - 0) for c in head.split("|")[1:-1]) + "|")
    for r in results:
        print(
            f"| {r.backend:8} | {r.rate:>12,.0f} | {r.pct(50):>7.1f} | {r.pct(99):>7.1f} | "
            f"{r.accepted:>8} | {r.duplicates:>9} | {r.errors:>6} | {r.seconds:>7.1f} | "
            f"{r.server_cpu / r.sent * 1000:>16.2f} | {r.client_cpu / r.sent * 1000:>16.2f} |"
        )
    expected_accepted = uniques
    bad = [r for r in results if r.errors or r.accepted != expected_accepted]
    if bad:
        print(f"\nFAILED: expected {expected_accepted} accepted and no errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
