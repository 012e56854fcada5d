"""Exact totals under ``uvicorn --workers 4``: four processes count into one outbox.

The example FastAPI app runs as a real pre-fork server. Concurrent clients send a
known mix of requests (counted, 404, 422, HEAD, opted-out); after a graceful stop,
the outbox holds exactly the counted ones, and the tallies the four processes wrote
add up to every request they answered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from outbox import Telemetry, store
from tests.support.env import child_env, free_port
from tests.web.conftest import stored

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: (method, path, status, name or None), sent ROUNDS times each, from 8 threads.
MIX = [
    ("GET", "/api/users/", 200, "users.list"),
    ("GET", "/api/users/1042", 200, "users.get"),
    ("GET", "/api/users/by-name/jdoe", 200, "users.by_name.get"),
    ("GET", "/api/groups/eng/members/a.lovelace", 200, "groups.members.get"),
    ("POST", "/api/v1/projects/apollo/deploy", 202, "projects.deploy.create"),
    ("DELETE", "/api/users/1043", 204, "users.delete"),
    ("GET", "/api/users/9999", 404, None),
    ("GET", "/api/users/jdoe", 422, None),
    ("GET", "/api/nothing/here", 404, None),
    ("HEAD", "/api/users/", 405, None),
    ("GET", "/healthz", 200, None),
]
ROUNDS = 60


def test_exact_totals_from_four_worker_processes(db_path: Path, tmp_path: Path) -> None:
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    t.set_enabled(True)  # the organisation's choice, read by all four processes
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_app:create_app"]
        + ["--workers", "4", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=child_env(HELIOS_TELEMETRY_DB=str(db_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    polls = 0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                polls += 1
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)

        def client(_: int) -> Counter[tuple[str, int]]:
            seen: Counter[tuple[str, int]] = Counter()
            with httpx.Client(base_url=base, timeout=30) as c:
                for _round in range(ROUNDS // 6):
                    for method, path, _, _ in MIX:
                        seen[(path, c.request(method, path).status_code)] += 1
            return seen

        with ThreadPoolExecutor(8) as pool:
            answers = sum(pool.map(client, range(8)), Counter())
        rounds = 8 * (ROUNDS // 6)
        assert answers == Counter({(p, s): rounds for _, p, s, _ in MIX})
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # graceful: each worker flushes its tally
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output

    want = Counter({("api", name): rounds for _, _, _, name in MIX if name is not None})
    assert stored(db_path) == dict(want)
    with t.connect() as conn:
        tally = store.web_tracking(conn)
    assert tally is not None
    route = tally["RouteTracking"]
    assert route["seen"] == rounds * len(MIX) + polls
    assert route["counted"] == sum(want.values())
    assert route["not_counted"] == {
        "status": 2 * rounds,  # the 404 of a missing user, the 422
        "unmatched": rounds,
        "method": rounds,
        "opted_out": rounds + polls,
    }
    assert route["warning"] is None
    t.close()
