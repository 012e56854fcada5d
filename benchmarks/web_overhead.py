"""The cost of counting API calls: the same app with and without the tracking middleware.

Four uvicorn servers of one small Starlette app run side by side in one run:
without tracking; ``writes="inline"`` (one track call on the event loop after each
response); ``executor``, each response's track call handed to the loop's default
thread pool (``run_in_executor``, one thread hop per request); and ``writes="thread"``,
the default (names handed to the middleware's writer thread, which stores what is
waiting in batches). Rounds alternate between them (the order rotates every round)
while, in the background, the real worker (``python -m worker --once`` against a
receiver that is down, so its heartbeat stays pending) compacts a large unsealed
backlog of the same outbox, replenished in 5,000-row transactions whenever it runs
low. Two apps: ``--app relay`` (default) forwards each request to an
upstream that answers a page of ``--users`` users, over HTTP with httpx, as the Helios
relay does (``RelayTracking``); ``--app route`` answers that page itself
(``RouteTracking``; ``--users 0`` is an empty answer, the worst case for the ratio).

Two phases, each alternating the variants round by round:

* **throughput**: a load process keeps ``--connections`` keep-alive connections busy
  (closed loop) for ``--seconds``: requests/s and its ratio to the app without
  tracking; server CPU µs per request (user + system of the server process, threads
  included) and the difference to without;
* **loop lag**: the same connections paced to ``--rate`` requests/s in all (the same
  load for every variant, below saturation): event-loop lag p50/p99/p99.9/max from a
  probe task in each server that sleeps 1 ms and measures how late it wakes.

Aims (issue 10): ratio ≥ 0.97, extra CPU ≤ 40 µs per request, loop lag p99.9 ≤ 5 ms.

    python benchmarks/web_overhead.py [--app relay|route] [--users 100] [--rounds 5]
        [--seconds 4] [--connections 16] [--rate REQUESTS_PER_S] [--backlog 400000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from outbox import Telemetry, db, heartbeats, maintenance  # noqa: E402
from tests.support.env import free_port  # noqa: E402

VARIANTS = ("without", "inline", "executor", "thread")
PATHS = {"route": "/api/users/42/groups", "relay": "/api/relay/users/42/groups"}
WHAT = {
    "route": "RouteTracking on a route answering {users} users as JSON",
    "relay": "RelayTracking on a relay forwarding to an upstream answering {users} users",
}
NAMES = [f"bench.name_{i}" for i in range(60)]
DAY = 86400
TICK = os.sysconf("SC_CLK_TCK")


# -- the servers (run as ``python web_overhead.py --serve CONFIG``) ------------------------------


def page(users: int) -> dict[str, Any]:
    members = [
        {"id": i, "name": f"User {i}", "email": f"user{i}@example.org", "groups": ["eng"]}
        for i in range(users)
    ]
    return {"members": members}


def serve_upstream(port: int, users: int) -> None:
    """The directory API the relay forwards to: a page of users for any path."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse(page(users))

    app = Starlette(routes=[Route("/{path:path}", answer)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve(variant: str, port: int, db_path: str, kind: str, users: int, upstream: int) -> None:
    """One variant of the app: ``route`` answers a page of users itself (RouteTracking);
    ``relay`` forwards each request to the upstream over HTTP (RelayTracking)."""
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from outbox.web import RelayTracking, RouteTracking, not_tracked
    from outbox.web.counting import Outcome
    from outbox.web.tracking import Writes

    lags: list[float] = []

    async def probe() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    async def groups(request: Request) -> JSONResponse:
        return JSONResponse(page(users))

    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream}")

    @not_tracked
    async def relay(request: Request) -> Response:
        answer = await client.get("/" + request.path_params["path"])
        return Response(answer.content, answer.status_code, media_type="application/json")

    @not_tracked
    async def lag(request: Request) -> JSONResponse:
        values = sorted(lags)
        lags.clear()
        return JSONResponse(values[:: max(1, len(values) // 20000)] if values else [])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(probe())
        yield
        task.cancel()

    tracking: type[RouteTracking | RelayTracking] = (
        RouteTracking if kind == "route" else RelayTracking
    )

    class PerRequestThread(tracking):  # type: ignore[valid-type,misc]
        """Each response's track call on the default thread pool: one hop per request."""

        def _record(self, outcome: Outcome, name: str | None) -> None:
            self.tally.add(outcome)
            if outcome is Outcome.COUNTED:
                asyncio.get_running_loop().run_in_executor(None, self._write, name)

    app = Starlette(
        routes=[
            Route("/api/users/{user_id:int}/groups", groups),
            Route("/api/relay/{path:path}", relay),
            Route("/_bench/lag", lag),
        ],
        lifespan=lifespan,
    )
    t = Telemetry(db_path=db_path, environ={})
    if variant == "executor":
        app.add_middleware(PerRequestThread, telemetry=t, writes="inline")
    elif variant != "without":
        writes: Writes = "inline" if variant == "inline" else "thread"
        if kind == "route":
            app.add_middleware(RouteTracking, telemetry=t, writes=writes)
        else:
            app.add_middleware(RelayTracking, telemetry=t, writes=writes)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the load (run as ``python web_overhead.py --load CONFIG``) ----------------------------------


async def _connection(
    port: int, path: str, deadline: float, counts: list[int], every: float
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    due = loop.time()
    while loop.time() < deadline:
        if every:
            due += every
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        counts[0] += 1
    writer.close()


def load(port: int, path: str, seconds: float, connections: int, rate: float) -> None:
    async def run() -> int:
        counts = [0]
        deadline = asyncio.get_running_loop().time() + seconds
        every = connections / rate if rate else 0.0
        await asyncio.gather(
            *(_connection(port, path, deadline, counts, every) for _ in range(connections))
        )
        return counts[0]

    try:
        import uvloop

        n = uvloop.run(run())
    except ImportError:
        n = asyncio.run(run())
    print(n)


# -- the background worker --------------------------------------------------------------------


def prepare(path: Path, backlog: int) -> None:
    """An outbox with sharing on, a heartbeat left pending and ``backlog`` unsealed rows."""
    t = Telemetry(db_path=path, environ={})
    t.set_enabled(True)
    t.track_command("warmup")
    t.close()
    conn = db.connect(path)
    try:
        plan = heartbeats.plan_seal(conn)
        heartbeats.commit_seal(
            conn, plan, heartbeat_id=str(uuid.uuid4()), now=int(time.time()),
            version="0", edition="community",
        )  # fmt: skip
    finally:
        conn.close()
    replenish(path, backlog)


def replenish(path: Path, rows: int, chunk: int = 5000) -> None:
    """Add ``rows`` unsealed events over 30 days, ``chunk`` per transaction."""
    rng = random.Random(rows)
    now = int(time.time())
    conn = db.connect(path, busy_timeout=30)
    try:
        for start in range(0, rows, chunk):
            batch = sorted(
                (
                    ("api", rng.choice(NAMES), 1, now - rng.randrange(30 * DAY))
                    for _ in range(min(chunk, rows - start))
                ),
                key=lambda r: r[3],
            )
            with db.transaction(conn):
                conn.executemany(
                    "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", batch
                )
            time.sleep(0.025)
    finally:
        conn.close()


class Background:
    """The real worker compacting the outbox again and again until stopped."""

    def __init__(self, path: Path, backlog: int) -> None:
        self.path = path
        self.backlog = backlog
        self.stop = threading.Event()
        self.runs = 0
        self.busy = 0.0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        dead = f"http://127.0.0.1:{free_port()}/api/instances/heartbeat"
        env = {**os.environ, "HELIOS_TELEMETRY_DB": str(self.path)}
        env.pop("HELIOS_TELEMETRY_ENABLED", None)
        env.pop("DO_NOT_TRACK", None)
        while not self.stop.is_set():
            conn = db.connect(self.path, busy_timeout=30)
            try:
                unsealed = maintenance.unsealed_rows(conn)
            finally:
                conn.close()
            if unsealed < self.backlog // 2:
                replenish(self.path, self.backlog // 2)
            start = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "worker", "--once", "--endpoint", dead]
                + ["--retry-attempts", "1", "--connect-timeout", "1", "--log-level", "error"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=600,
                check=False,
            )
            self.busy += time.monotonic() - start
            self.runs += 1

    @contextmanager
    def running(self) -> Iterator[Background]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self.thread.join(600)


# -- measuring ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def get(port: int, path: str) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def start_servers(
    path: Path, args: argparse.Namespace
) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    """The upstream (key ``upstream``) and one server per variant."""
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    upstream = free_port()
    servers["upstream"] = (
        subprocess.Popen(
            [sys.executable, __file__, "--upstream", json.dumps([upstream, args.users])],
            cwd=ROOT,
        ),
        upstream,
    )
    for variant in VARIANTS:
        port = free_port()
        config = [variant, port, str(path), args.app, args.users, upstream]
        proc = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(config)], cwd=ROOT)
        servers[variant] = (proc, port)
    for name, (_, port) in servers.items():
        if name == "upstream":
            continue
        deadline = time.monotonic() + 30
        while True:
            try:
                get(port, "/_bench/lag")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("a server did not start") from None
                time.sleep(0.1)
    return servers


def measure(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    args: argparse.Namespace,
    rate: float,
) -> dict[str, dict[str, Any]]:
    """Rounds over the variants (the order rotating); requests, seconds, CPU and lags."""
    totals: dict[str, dict[str, Any]] = {
        v: {"requests": 0, "seconds": 0.0, "cpu": 0.0, "lags": []} for v in VARIANTS
    }
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            proc, port = servers[variant]
            get(port, "/_bench/lag")  # start this round's lag record afresh
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            config = [port, PATHS[args.app], args.seconds, args.connections, rate]
            out = subprocess.run(
                [sys.executable, __file__, "--load", json.dumps(config)],
                capture_output=True,
                text=True,
                timeout=args.seconds + 60,
                check=True,
            )
            row = totals[variant]
            row["seconds"] += time.monotonic() - t0
            row["cpu"] += cpu_seconds(proc.pid) - cpu0
            row["lags"] += get(port, "/_bench/lag")
            row["requests"] += int(out.stdout)
            phase = f"paced {rate:g}/s" if rate else "throughput"
            rps = int(out.stdout) / args.seconds
            print(f"{phase} round {r + 1} {variant:8} {rps:8,.0f} req/s", file=sys.stderr)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, help="paced load (default: 1000 route, 200 relay)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=400_000)
    parser.add_argument("--app", choices=["relay", "route"], default="relay")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*json.loads(args.serve))
        return 0
    if args.load:
        load(*json.loads(args.load))
        return 0
    if args.upstream:
        serve_upstream(*json.loads(args.upstream))
        return 0
    if args.rate is None:
        args.rate = 1000.0 if args.app == "route" else 200.0

    folder = Path(tempfile.mkdtemp(prefix="helios-web-overhead-"))
    path = folder / "telemetry.db"
    print(f"preparing an outbox with {args.backlog:,} unsealed rows ...", file=sys.stderr)
    prepare(path, args.backlog)
    servers = start_servers(path, args)
    background = Background(path, args.backlog)
    started = time.monotonic()
    try:
        with background.running():
            time.sleep(1.0)  # the worker is at work before the first round
            throughput = measure(servers, args, 0.0)
            paced = measure(servers, args, args.rate)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    wall = time.monotonic() - started

    base = throughput["without"]
    base_rps = base["requests"] / base["seconds"]
    base_cpu = base["cpu"] / base["requests"] * 1e6
    print(
        f"\nweb overhead: {args.rounds} rounds x {args.seconds:g} s per variant and phase, "
        f"{args.connections} connections, {WHAT[args.app].format(users=args.users)}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"background: python -m worker --once compacting a {args.backlog:,}-row backlog, "
        f"{background.runs} runs, busy {background.busy / wall:.0%} of the time"
    )
    print(
        f"\n{'':9} {'throughput (closed loop)':^39}  {f'loop lag at {args.rate:g} req/s':^34}"
        f"\n{'variant':9} {'req/s':>8} {'ratio':>6} {'CPU µs/req':>11} {'extra µs':>9}  "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>9} {'max ms':>7}"
    )
    for variant in VARIANTS:
        row = throughput[variant]
        rps = row["requests"] / row["seconds"]
        cpu = row["cpu"] / row["requests"] * 1e6
        lags = [x * 1000 for x in paced[variant]["lags"]]
        print(
            f"{variant:9} {rps:8,.0f} {rps / base_rps:6.3f} {cpu:11.1f} {cpu - base_cpu:9.1f}  "
            f"{percentile(lags, 0.5):7.2f} {percentile(lags, 0.99):7.2f} "
            f"{percentile(lags, 0.999):9.2f} {max(lags, default=0):7.2f}"
        )
    counted = Telemetry(db_path=path, environ={})
    with counted.connect(readonly=True) as conn:
        stored = conn.execute(
            "SELECT coalesce(sum(count), 0) FROM events WHERE name = 'users.groups.list'"
        ).fetchone()[0]
    tracked = sum(int(phase[v]["requests"]) for phase in (throughput, paced) for v in VARIANTS[1:])
    print(f"\ncounted users.groups.list: {stored:,} of {tracked:,} tracked requests")
    return 0 if stored == tracked else 1


if __name__ == "__main__":
    raise SystemExit(main())
