"""Exact totals from pre-fork WSGI servers: gunicorn with 4 worker processes of 4 threads
each, for the Flask and the Django contract apps (``test_workers.py`` does the same for
``uvicorn --workers 4``).

Concurrent clients send a known mix (counted, relayed, unknown, 404, redirect, HEAD,
opted out); after a graceful stop the outbox holds exactly the counted ones, and the
tallies the four processes wrote at exit add up to every request they answered.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from outbox import Telemetry, store
from tests.web.conftest import drops, stored
from tests.web.servers import WSGI, running

pytestmark = pytest.mark.slow

#: (method, path, status, name | "unknown_name" | None), sent by 8 threads ROUNDS times each.
MIX = [
    ("GET", "/api/users", 200, "users.list"),
    ("GET", "/api/users/1042", 200, "users.get"),
    ("GET", "/api/users/by-name/jdoe", 200, "users.by_name.get"),
    ("GET", "/api/users/1042/groups", 200, "users.groups.list"),
    ("POST", "/api/v1/projects/apollo/deploy", 202, "projects.deploy.create"),
    ("DELETE", "/api/users/1043", 204, "users.delete"),
    ("GET", "/api/relay/groups/eng/members", 200, "groups.members.list"),
    ("GET", "/api/relay/hosts/db01", 200, "unknown_name"),
    ("GET", "/api/users/9999", 404, None),
    ("GET", "/api/nothing/here", 404, None),
    ("GET", "/api/old-users", 302, None),
    ("HEAD", "/api/users", 200, None),
    ("GET", "/healthz", 200, None),
]
ROUNDS = 25
THREADS = 8


@pytest.mark.parametrize("adapter", WSGI)
def test_exact_totals_from_four_gunicorn_workers(adapter: str, db_path: Path) -> None:
    t = Telemetry(db_path=db_path, enabled=None, environ={})
    t.set_enabled(True)  # the organisation's choice, read by all four processes
    with running(adapter, db_path, workers=4, threads=4) as server:

        def client(_: int) -> Counter[tuple[str, str, int]]:
            seen: Counter[tuple[str, str, int]] = Counter()
            with server.client() as c:
                for _round in range(ROUNDS):
                    for method, path, _, _ in MIX:
                        seen[(method, path, c.request(method, path).status_code)] += 1
            return seen

        with ThreadPoolExecutor(THREADS) as pool:
            answers = sum(pool.map(client, range(THREADS)), Counter())
        output = server.stop()  # graceful: each worker stores its counts and tally at exit
    sent = THREADS * ROUNDS
    assert answers == Counter({(m, p, s): sent for m, p, s, _ in MIX})
    assert server.process.returncode == 0, output

    want = Counter({("api", n): sent for *_, n in MIX if n not in (None, "unknown_name")})
    assert stored(db_path) == dict(want)
    assert drops(db_path) == {"unknown_name": sent}
    with t.connect() as conn:
        tally = store.web_tracking(conn)
    t.close()
    assert tally is not None
    route, relay = tally["RouteTracking"], tally["RelayTracking /api/relay"]
    everything = sent * len(MIX) + server.polls
    assert route["seen"] == relay["seen"] == everything
    assert route["counted"] == sum(want.values()) - sent  # the relayed members are the relay's
    assert route["not_counted"] == {
        "status": 2 * sent,  # the 404 of a missing user, the redirect
        "unmatched": sent,
        "method": sent,
        "opted_out": 3 * sent + server.polls,  # /healthz and the two relayed paths
    }
    assert (relay["counted"], relay["unknown_name"]) == (sent, sent)
    assert route["warning"] is None and relay["warning"] is None
