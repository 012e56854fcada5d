"""The candidates around the collector, each side by side with what it uses, in one run.

1. **Decoding a heartbeat body** (µs per body, the same 2,000 bodies of the load test):
   what ``collector.validate.parse`` does today (``json.loads`` with a duplicate-key
   hook, then the checks) against faster decoders for its first step: ``json.loads``
   without the hook, ``orjson.loads`` (plus ``orjson.dumps`` to compare with the body:
   the only way to refuse a repeated key it would silently merge), ``msgspec``.
2. **The HTTP server** (requests/s, 64 keep-alive clients, a trivial ASGI app that
   answers like the heartbeat route): uvicorn with the collector's ``GuardedProtocol``
   (what runs) against Granian (``--runtime-mode st`` and ``mt``), both one process.

The candidates are not dependencies of the project: install them to compare
(``pip install orjson msgspec granian``); a missing one is reported and skipped.

    python benchmarks/collector_stack.py
    python benchmarks/collector_stack.py --rounds 3 --requests 10000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_load import load, machine, make_bodies  # noqa: E402

from collector.validate import _pairs, _reject_constant, load_json, parse  # noqa: E402

HELLO = textwrap.dedent(
    """
    BODY = b'{"status":"accepted","payload_sha256":"' + b"0" * 64 + b'"}'
    START = {"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", str(len(BODY)).encode()), (b"content-type", b"application/json")]}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:
            m = await receive()
            more = m.get("more_body", False)
        await send(START)
        await send({"type": "http.response.body", "body": BODY})
    """
)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def decoders() -> dict[str, Callable[[bytes], object]]:
    found: dict[str, Callable[[bytes], object]] = {
        "parse() today (json + hook + checks)": parse,
        "  its json.loads with the hook": load_json,
        "  json.loads, no hook": lambda b: json.loads(b),
        "  json.loads, hook, no UTF-8 step": lambda b: json.loads(
            b, object_pairs_hook=_pairs, parse_constant=_reject_constant
        ),
    }
    if have("orjson"):
        import orjson

        found["  orjson.loads"] = orjson.loads
        found["  orjson.loads + dumps == body"] = lambda b: orjson.dumps(orjson.loads(b)) == b
    if have("msgspec"):
        import msgspec

        decoder = msgspec.json.Decoder()
        found["  msgspec.json.Decoder().decode"] = decoder.decode
    return found


def time_decoders(bodies: list[bytes], rounds: int) -> list[tuple[str, float]]:
    out = []
    for name, fn in decoders().items():
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            for b in bodies:
                fn(b)
            samples.append((time.perf_counter() - t) / len(bodies) * 1e6)
        out.append((name, statistics.median(samples)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server(kind: str, folder: str, port: int) -> list[str]:
    if kind == "uvicorn + GuardedProtocol":
        code = (
            f"import sys; sys.path.insert(0, {folder!r}); import hello; "
            "from collector.server import bind, make_server; "
            f"make_server(hello.app).run(sockets=[bind('127.0.0.1', {port})])"
        )
        return [sys.executable, "-c", code]
    mode = "st" if kind.endswith("st") else "mt"
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--runtime-mode",
        mode,
        "--no-ws",
        "--log-level",
        "warning",
        "hello:app",
    ]


def time_servers(bodies: list[bytes], rounds: int) -> list[tuple[str, list[float]]]:
    kinds = ["uvicorn + GuardedProtocol"]
    if have("granian"):
        kinds += ["granian st", "granian mt"]
    results: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "hello.py").write_text(HELLO)
        for _ in range(rounds):
            for kind in kinds:  # alternating, so that a change of load hits every one
                port = free_port()
                proc = subprocess.Popen(
                    server(kind, folder, port),
                    cwd=folder,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            socket.create_connection(("127.0.0.1", port), timeout=1).close()
                            break
                        except OSError:
                            if time.monotonic() > deadline:
                                raise SystemExit(f"{kind} did not start") from None
                            time.sleep(0.05)
                    url = f"http://127.0.0.1:{port}"
                    load(url, bodies[:500], 64)
                    seconds, _, tally = load(url, bodies, 64)
                    assert tally["accepted"] == len(bodies), tally
                    results[kind].append(len(bodies) / seconds)
                finally:
                    proc.terminate()
                    proc.wait(20)
    return list(results.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    bodies, _ = make_bodies(2_000, 0.0)
    missing = [m for m in ("orjson", "msgspec", "granian") if not have(m)]
    print(f"{machine()}; not installed, skipped: {', '.join(missing) or 'none'}\n")
    decoded = time_decoders(bodies, args.rounds)
    base = decoded[0][1]
    print(f"| {'decoding one heartbeat body (1.1 KiB)':40} | {'µs':>6} | {'of parse()':>10} |")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 12}|")
    for name, us in decoded:
        print(f"| {name:40} | {us:>6.1f} | {us / base:>10.2f} |")
    requests, _ = make_bodies(args.requests, 0.0, seed=9)
    served = time_servers(requests, args.rounds)
    base_rate = statistics.median(served[0][1])
    print(
        f"\n| {'server, trivial app, 64 clients':32} | {'median req/s':>12} | "
        f"{'spread':>15} | {'ratio':>5} |"
    )
    print(f"|{'-' * 34}|{'-' * 14}|{'-' * 17}|{'-' * 7}|")
    for kind, rates in served:
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        median = statistics.median(rates)
        print(f"| {kind:32} | {median:>12,.0f} | {spread:>15} | {median / base_rate:>5.2f} |")
    print(f"\n{machine()}  (pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
