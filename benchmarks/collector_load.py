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
    python benchmarks/collector_load.py --against ad0869f --rounds 3   # before/after

``--against REF`` runs the collector of that git commit (``git archive`` of
``collector/`` and ``outbox/`` into a temp dir, first on ``PYTHONPATH``) and this
one in alternating rounds on the same bodies, and prints their ratio: the figure to
trust on a machine shared with other work. The date, the machine and ``uptime``
are printed with every table.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
    label: str
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
    db_cpu: float = 0.0  # seconds of CPU the PostgreSQL cluster used (a throwaway one)

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
def collector(db: str, *extra: str, src: str | None = None) -> Iterator[tuple[str, int]]:
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
    env = dict(os.environ)
    if src is not None:  # another commit's collector, ahead of the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    # -m puts the working directory first on sys.path: run a reference from its own.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=src)
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
    label: str,
    backend: str,
    db: str,
    bodies: list[bytes],
    warmup: list[bytes],
    clients: int,
    extra: list[str],
    src: str | None = None,
) -> Result:
    with collector(db, *extra, src=src) as (url, pid):
        load(url, warmup, clients)  # new connections, first pages of the database
        server_cpu, client_cpu = cpu_seconds(pid, tree=True), time.process_time()
        db_cpu = postgres_cpu()
        seconds, latencies, tally = load(url, bodies, clients)
        server_cpu = cpu_seconds(pid, tree=True) - server_cpu
        client_cpu = time.process_time() - client_cpu
        db_cpu = postgres_cpu() - db_cpu
    return Result(
        label,
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
        db_cpu,
    )


#: The data directory of the throwaway cluster, when one runs.
PG_DATA: list[str] = []


def postgres_cpu() -> float:
    """CPU seconds the throwaway PostgreSQL cluster (postmaster and backends) used so far."""
    if not PG_DATA:
        return 0.0
    pid = int(Path(PG_DATA[0], "postmaster.pid").read_text().split()[0])
    return cpu_seconds(pid, tree=True)


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[str]:
    """``collector/`` and ``outbox/`` of git commit ``ref``, in a temp dir."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="collector-ref-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", ref, "collector", "outbox", "schema.sql"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        shutil.copy(Path(tmp) / "schema.sql", Path(tmp) / "outbox" / "schema.sql")
        yield tmp


def machine() -> str:
    """Date, CPUs, Python and the load average: printed with every table."""
    load1, load5, load15 = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {load1:.1f} {load5:.1f} {load15:.1f}"
    )


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc); with ``tree``, plus that
    of its children still running (a collector's ``--workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not tree:
        return own
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return own + sum(cpu_seconds(int(k), tree=True) for k in kids if Path(f"/proc/{k}").exists())


def table(results: list[Result]) -> None:
    head = (
        f"| {'collector':11} | {'backend':8} | {'heartbeats/s':>12} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'accepted':>8} | {'duplicate':>9} | {'errors':>6} | "
        f"{'server CPU ms/hb':>16} | {'PG CPU ms/hb':>12} | {'client CPU ms/hb':>16} |"
    )
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for r in results:
        print(
            f"| {r.label:11} | {r.backend:8} | {r.rate:>12,.0f} | {r.pct(50):>7.1f} | "
            f"{r.pct(99):>7.1f} | {r.accepted:>8} | {r.duplicates:>9} | {r.errors:>6} | "
            f"{r.server_cpu / r.sent * 1000:>16.2f} | {r.db_cpu / r.sent * 1000:>12.2f} | "
            f"{r.client_cpu / r.sent * 1000:>16.2f} |"
        )


def summary(results: list[Result]) -> None:
    """Median per (collector, backend) over the rounds, the spread, and the ratios to the
    first contender (REF's collector, or the first ``--variant``)."""
    print()
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.backend, r.label), []).append(r)
    print(
        f"| {'backend':8} | {'collector':11} | {'rounds':>6} | {'median hb/s':>11} | "
        f"{'spread hb/s':>15} | {'median p99 ms':>13} | {'server CPU ms/hb':>16} | "
        f"{'PG CPU ms/hb':>12} | {'hb/s ratio':>10} | {'CPU ratio':>9} |"
    )
    print(
        f"|{'-' * 10}|{'-' * 13}|{'-' * 8}|{'-' * 13}|{'-' * 17}|{'-' * 15}|{'-' * 18}|"
        f"{'-' * 14}|{'-' * 12}|{'-' * 11}|"
    )
    for backend in dict.fromkeys(b for b, _ in groups):
        first = results[0].label
        ref = groups.get((backend, first))
        for (b, label), rs in groups.items():
            if b != backend:
                continue
            rate = statistics.median(r.rate for r in rs)
            cpu = statistics.median(r.server_cpu / r.sent * 1000 for r in rs)
            p99 = statistics.median(r.pct(99) for r in rs)
            db = statistics.median(r.db_cpu / r.sent * 1000 for r in rs)
            spread = f"{min(r.rate for r in rs):,.0f}-{max(r.rate for r in rs):,.0f}"
            if ref and label != first:
                ref_rate = statistics.median(r.rate for r in ref)
                ref_cpu = statistics.median(r.server_cpu / r.sent * 1000 for r in ref)
                ratios = f"{rate / ref_rate:>10.2f} | {cpu / ref_cpu:>9.2f}"
            else:
                ratios = f"{'1.00' if ref else '':>10} | {'1.00' if ref else '':>9}"
            print(
                f"| {backend:8} | {label:11} | {len(rs):>6} | {rate:>11,.0f} | {spread:>15} | "
                f"{p99:>13.1f} | {cpu:>16.2f} | {db:>12.2f} | {ratios} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--heartbeats", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of resends")
    parser.add_argument("--pg-dsn", help="use this PostgreSQL database instead of a new cluster")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, alternating contenders")
    parser.add_argument("--against", metavar="REF", help="also run git commit REF's collector")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=OPTIONS",
        help="a collector started with these options (repeat: side by side, the first is "
        'the reference), e.g. --variant "1 process=--workers 1" --variant "2=--workers 2"',
    )
    parser.add_argument("collector_args", nargs="*", help="extra outbox-collector options")
    args = parser.parse_args()

    bodies, uniques = make_bodies(args.heartbeats, args.duplicates)
    warmup, _ = make_bodies(args.clients * 8, 0.0, seed=8)
    size = statistics.mean(len(b) for b in bodies)
    print(
        f"{len(bodies)} heartbeats ({uniques} distinct, {len(bodies) - uniques} resent), "
        f"{size / 1024:.1f} KiB average body, {args.clients} concurrent clients; "
        f"{machine()}\n"
    )
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        contenders: list[tuple[str, str | None, list[str]]] = [
            (label, None, [*args.collector_args, *options.split()])
            for label, _, options in (v.partition("=") for v in args.variant)
        ] or [("this", None, args.collector_args)]
        if args.against:
            src = stack.enter_context(checkout(args.against))
            contenders.insert(0, ("before", src, args.collector_args))
        targets: list[tuple[str, Callable[[], str]]] = []
        if args.backend in ("sqlite", "both"):
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            fresh = itertools.count()
            targets.append(("sqlite", lambda: str(Path(tmp) / f"c{next(fresh)}.db")))
        if args.backend in ("postgres", "both"):
            dsn = args.pg_dsn or stack.enter_context(throwaway_postgres())
            targets.append(("postgres", lambda: postgres.drop_collector_tables(dsn)))
        for _ in range(args.rounds):
            for backend, target in targets:
                for label, src, options in contenders:
                    r = run(label, backend, target(), bodies, warmup, args.clients, options, src)
                    results.append(r)
                    print(
                        f"  {label:11} {backend:8} {r.rate:8,.0f} hb/s  p99 {r.pct(99):6.1f} ms"
                        f"  server CPU {r.server_cpu / r.sent * 1000:.2f} ms/hb"
                        f"  PG CPU {r.db_cpu / r.sent * 1000:.2f} ms/hb",
                        flush=True,
                    )
    print(f"\n{machine()}\n")
    table(results)
    if args.rounds > 1 or len(contenders) > 1:
        summary(results)
    expected_accepted = uniques
    bad = [r for r in results if r.errors or r.accepted != expected_accepted]
    if bad:
        print(f"\nFAILED: expected {expected_accepted} accepted and no errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
