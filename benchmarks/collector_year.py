"""A year at scale: the public insights over a year of data for 10,000 instances.

Generates, straight into a new database (bulk inserts, not HTTP), what a year of a fleet
leaves in the collector's tables: ``instances``, one ``instance_heartbeats`` row per
instance and day (bodies left out: their size is measured apart, below), the
``name_instances`` spans (each instance uses ``--names-per-instance`` names per kind,
picked by a Zipf-like popularity from ``--names`` per kind), ``aggregated_metrics`` for
every (day, kind, name), and the rollups (``rebuild_rollups``). Then it times
``GET /api/insights`` and ``GET /insights`` on a real server for windows of 7, 30 and
365 days, side by side with the same numbers read the direct way (every day row and
every span of the window: what the collector did before schema version 3).

Storage per heartbeat is measured on real bodies: ``--sample`` heartbeats made by the
outbox's payload code, ingested through ``Storage.ingest``, the database's growth
divided by their number.

    python benchmarks/collector_year.py                     # SQLite and PostgreSQL
    python benchmarks/collector_year.py --backend sqlite --instances 2000

Everything is made in temp dirs and removed at the end (SQLite ~1.1 GB, PostgreSQL
~2 GB at the default scale; about 4 GB of memory while generating).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import http.client
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_load import fresh_postgres, machine, throwaway_postgres  # noqa: E402

from collector import Storage, create_app  # noqa: E402
from collector.insights import window  # noqa: E402
from collector.schema import (  # noqa: E402
    aggregated_metrics,
    name_instances,
    rebuild_rollups,
)
from collector.server import serve_in_thread  # noqa: E402
from collector.validate import parse  # noqa: E402
from outbox.contract import encode  # noqa: E402
from outbox.payload import Aggregate, build_payload  # noqa: E402

TODAY = date(2026, 11, 30)
NOW = 1_796_083_200 + 12 * 3600  # 2026-11-30 12:00 UTC
KINDS = ("api", "command", "ui")
PREFIX = {"api": "bench.api", "command": "bench.cmd", "ui": "bench.ui"}


def names(per_kind: int) -> dict[str, list[str]]:
    return {k: [f"{PREFIX[k]}_{j:04d}" for j in range(per_kind)] for k in KINDS}


def generate(
    n_instances: int, per_kind: int, per_instance: int, days: int, seed: int = 16
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of a year (see the module docstring), as plain tuples per table."""
    rng = random.Random(seed)
    catalogue = names(per_kind)
    weights = [1 / (j + 1) ** 0.9 for j in range(per_kind)]
    first_day = TODAY - timedelta(days=days - 1)
    spans: list[tuple[str, str, str, str, str]] = []
    heartbeats: list[tuple[Any, ...]] = []
    instance_rows: list[tuple[Any, ...]] = []
    active_per_day = [0] * days
    users: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * days)
    for _ in range(n_instances):
        iid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = 0 if rng.random() < 0.6 else rng.randrange(days)
        end = days - 1 if rng.random() < 0.85 else rng.randrange(start, days)
        phase = rng.randrange(86_400)
        for d in range(start, end + 1):
            active_per_day[d] += 1
            at = NOW - (days - 1 - d) * 86_400 - 12 * 3600 + phase
            heartbeats.append(
                (str(uuid.UUID(int=rng.getrandbits(128), version=4)), iid, d - start + 1, at)
            )
        version = rng.choice(["1.4.2", "1.5.0", "1.5.1", "1.6.0"])
        edition = "licensed" if rng.random() < 0.2 else "community"
        last_at = NOW - (days - 1 - end) * 86_400 - 12 * 3600 + phase
        first_at = NOW - (days - 1 - start) * 86_400 - 12 * 3600 + phase
        instance_rows.append(
            (iid, first_at, last_at, edition, version, end - start + 1, end - start + 1, 0, 0)
        )
        for kind in KINDS:
            picked: set[int] = set()
            while len(picked) < per_instance:
                picked.update(rng.choices(range(per_kind), weights, k=per_instance))
            for j in sorted(picked)[:per_instance]:
                f = min(start + rng.randrange(30), end)
                la = max(end - rng.randrange(3), f)
                spans.append(
                    (
                        iid,
                        kind,
                        catalogue[kind][j],
                        str(first_day + timedelta(days=f)),
                        str(first_day + timedelta(days=la)),
                    )
                )
                row = users[(kind, catalogue[kind][j])]
                for d in range(f, la + 1, 7):  # every week: enough for plausible sums
                    row[d] += 7
    aggregates: list[tuple[Any, ...]] = []
    for (kind, name), used in users.items():
        for d, n in enumerate(used):
            if n:
                aggregates.append((str(first_day + timedelta(days=d)), kind, name, n * 23))
    for d, n in enumerate(active_per_day):
        aggregates.append((str(first_day + timedelta(days=d)), "dropped", "over_capacity", n))
    hb_rows = [
        (hid, iid, seq, "0" * 64, at, at - 86_400, at, "community", "1.5.0", 0, b"")
        for hid, iid, seq, at in heartbeats
    ]
    return {
        "instances": [(*r, None) for r in instance_rows],
        "instance_heartbeats": hb_rows,
        "name_instances": spans,
        "aggregated_metrics": aggregates,
    }


def load_sqlite(path: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        for table, data in rows.items():
            if table == "aggregated_metrics":
                sql = "INSERT INTO aggregated_metrics (day, kind, name, count) VALUES (?,?,?,?)"
            else:
                sql = f"INSERT INTO {table} VALUES ({','.join('?' * len(data[0]))})"
            conn.executemany(sql, data)
    conn.close()


def load_postgres(dsn: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, data in rows.items():
            columns = "(day, kind, name, count)" if table == "aggregated_metrics" else ""
            with cur.copy(f"COPY {table} {columns} FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def sizes(storage: Storage) -> dict[str, int]:
    """Bytes per table (with its indexes)."""
    tables = [
        "instance_heartbeats",
        "instance_days",
        "name_instances",
        "aggregated_metrics",
        "metric_months",
        "day_totals",
        "receipt_days",
        "instances",
    ]

    def q(conn: sa.Connection) -> dict[str, int]:
        if storage.dialect == "postgresql":
            return {
                t: int(conn.execute(sa.text(f"SELECT pg_total_relation_size('{t}')")).scalar_one())
                for t in tables
            }
        found = dict.fromkeys(tables, 0)
        try:
            for name, size in conn.exec_driver_sql(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
            ):
                table = next((t for t in tables if name == t or t in name), None)
                if table:
                    found[table] += int(size)
        except sa.exc.OperationalError:  # SQLite built without dbstat
            pass
        return found

    return storage.read(q)


def timed(url: str, path: str, rounds: int) -> list[float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def direct(conn: sa.Connection, days: int) -> int:
    """The per-name figures of a window read the direct way (before schema version 3):
    every day row of the window, every span; returns the number of names."""
    first, last = window(NOW, days)
    a, n = aggregated_metrics, name_instances
    start, end = first.isoformat(), last.isoformat()
    counted = conn.execute(
        sa.select(a.c.kind, a.c.name, sa.func.sum(a.c["count"]))
        .where((a.c.day >= start) & (a.c.day <= end))
        .group_by(a.c.kind, a.c.name)
    ).all()
    reach = conn.execute(
        sa.select(n.c.kind, n.c.name, sa.func.count())
        .where((n.c.last_day >= start) & (n.c.first_day <= end))
        .group_by(n.c.kind, n.c.name)
    ).all()
    return len(counted) + len(reach)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def per_heartbeat(
    backend: str, target: str, sample: int, names_per_hb: int
) -> tuple[float, float, float]:
    """Bytes the database grows by per heartbeat of ``names_per_hb`` names per kind (an
    instance sending one a day): as stored, after ``fold`` (bodies emptied into day
    rows), and the body itself."""
    rng = random.Random(3)
    catalogue = names(1000)
    storage = Storage(target)
    storage.migrate(now=NOW)
    linear = ("instance_heartbeats", "instance_days")  # what grows with each heartbeat
    before = sum(sizes(storage)[t] for t in linear)
    iids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(sample // 10)]
    seq: dict[str, int] = defaultdict(int)
    batch = []
    for k in range(sample):
        iid = iids[k % len(iids)]
        seq[iid] += 1
        day = TODAY - timedelta(days=sample // len(iids) - seq[iid])
        rows = [
            Aggregate(kind, name, day, rng.randint(1, 400))  # type: ignore[arg-type]
            for kind in KINDS
            for name in rng.sample(catalogue[kind][:300], names_per_hb)
        ]
        body = encode(
            build_payload(
                rows,
                dropped={},
                heartbeat_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                instance_id=iid,
                sequence=seq[iid],
                period_start=f"{day - timedelta(days=1)}T12:00:00Z",
                period_end=f"{day}T12:00:00Z",
                version="1.5.0",
                edition="community",
            )
        )
        batch.append(dataclasses.replace(parse(body), credential="c" * 64))
        if len(batch) == 100:
            storage.ingest(batch, now=NOW)
            batch = []
    if batch:
        storage.ingest(batch, now=NOW)
    grown = sum(sizes(storage)[t] for t in linear) - before
    body_bytes = storage.read(
        lambda c: c.execute(sa.text("SELECT sum(size) FROM instance_heartbeats")).scalar_one()
    )
    storage.fold(before=NOW + 1)
    compact(storage)
    folded = sum(sizes(storage)[t] for t in linear) - before
    storage.close()
    return grown / sample, folded / sample, int(body_bytes) / sample


def settle(storage: Storage) -> None:
    """What a collector in steady state has: a checkpointed WAL and planner statistics."""
    raw = storage._writer.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if storage.dialect == "postgresql":
            driver.autocommit = True
            driver.execute("VACUUM ANALYZE")
            driver.autocommit = False
        else:
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            driver.execute("ANALYZE")
    finally:
        raw.close()


def compact(storage: Storage) -> None:
    """Give the pages that fold emptied back (VACUUM; FULL on PostgreSQL)."""
    raw = storage._writer.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if storage.dialect == "postgresql":
            driver.autocommit = True
            driver.execute("VACUUM FULL")
            driver.autocommit = False
        else:
            driver.execute("VACUUM")
    finally:
        raw.close()


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="collector-year-") as tmp:
            yield str(Path(tmp) / "year.db")
    else:
        with throwaway_postgres() as dsn:
            yield fresh_postgres(dsn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--names", type=int, default=1_000, help="names per kind")
    parser.add_argument("--names-per-instance", type=int, default=100, help="per kind")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=20, help="requests per window and page")
    parser.add_argument("--sample", type=int, default=2_000, help="heartbeats for the size")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = generate(args.instances, args.names, args.names_per_instance, args.days)
    # Millions of generated tuples live in this process, beside the server it times: out
    # of the collector's way (a full collection of them took 200 ms, now and then).
    gc.freeze()
    print(
        f"generated in {time.perf_counter() - started:.0f} s: {args.instances:,} instances, "
        f"{args.names:,} names per kind, {args.days} days: "
        + ", ".join(f"{len(v):,} {k}" for k, v in rows.items())
        + f"\n{machine()}\n",
        flush=True,
    )
    results = []
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with database(backend) as target:
            storage = Storage(target)
            storage.migrate(now=NOW)
            t = time.perf_counter()
            (load_sqlite if backend == "sqlite" else load_postgres)(
                str(storage.url.database) if backend == "sqlite" else target, rows
            )
            storage.write(rebuild_rollups)
            settle(storage)
            loaded = time.perf_counter() - t
            table_sizes = sizes(storage)
            app = create_app(storage, clock=lambda: float(NOW), migrate=False)
            with serve_in_thread(app) as running:
                for days in (7, 30, 365):
                    timed(running.url, f"/api/insights?days={days}", 2)  # warm the cache
                    api = timed(running.url, f"/api/insights?days={days}", args.rounds)
                    page = timed(running.url, f"/insights?days={days}", args.rounds)
                    slow = []
                    for _ in range(3):
                        t = time.perf_counter()
                        storage.read(lambda conn, d=days: direct(conn, d))
                        slow.append((time.perf_counter() - t) * 1000)
                    results.append((backend, days, api, page, slow))
                    print(
                        f"  {backend:8} {days:>3} days: /api/insights p95 {pct(api, 95):7.1f} "
                        f"ms, /insights p95 {pct(page, 95):7.1f} ms, "
                        f"direct {statistics.median(slow):8.1f} ms",
                        flush=True,
                    )
            storage.close()
        with database(backend) as target:
            kept, folded, body_size = per_heartbeat(backend, target, args.sample, 30)
        print(
            f"\n{backend}: loaded and rolled up in {loaded:.0f} s; tables "
            + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in table_sizes.items())
            + f"; a heartbeat of 90 names (body {body_size / 1024:.1f} KiB) takes "
            f"{kept / 1024:.1f} KiB in instance_heartbeats, {folded / 1024:.1f} KiB there and "
            "in instance_days once folded\n",
            flush=True,
        )
    print(f"\n{machine()}\n")
    print(
        f"| {'backend':8} | {'window':>6} | {'/api/insights p50':>17} | {'p95 ms':>7} | "
        f"{'/insights p50':>13} | {'p95 ms':>7} | {'direct read ms':>14} | "
        f"{'direct / api p50':>16} |"
    )
    print(f"|{'-' * 10}|{'-' * 8}|{'-' * 19}|{'-' * 9}|{'-' * 15}|{'-' * 9}|{'-' * 16}|{'-' * 18}|")
    for backend, days, api, page, slow in results:
        api50, slow50 = statistics.median(api), statistics.median(slow)
        print(
            f"| {backend:8} | {days:>4} d | {api50:>17.1f} | {pct(api, 95):>7.1f} | "
            f"{statistics.median(page):>13.1f} | {pct(page, 95):>7.1f} | "
            f"{slow50:>14.1f} | {slow50 / api50:>16.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
