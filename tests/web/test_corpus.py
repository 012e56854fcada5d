"""No text of a URL ever becomes a name: a corpus of personal and site data, end to end.

Over 150 realistic paths per app carrying user names, slugs, hostnames, file paths,
project and group names, tokens and keys, phone numbers, dates, Unicode lookalikes
and percent- and double-encoded forms go through a real FastAPI app
(``examples/fastapi_app.py``), a Starlette app and the example relay, each under
uvicorn. Then the real ``outbox-worker --once`` delivers to the real collector on
127.0.0.1. No word of the corpus may appear in the outbox files' raw bytes, in the
request bodies the collector received, or anywhere in ``/api/insights``; the names
that did arrive are exactly the ones the templates and the vocabulary make.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from collector import Storage, create_app
from collector.server import serve_in_thread
from examples import fastapi_app, host_app
from outbox import Telemetry
from outbox.contract import PAYLOAD_KEYS
from outbox.store import Meta
from outbox.web import RouteTracking
from tests.support.env import child_env
from tests.web.conftest import stored

pytestmark = pytest.mark.slow

#: What a path can carry. Each is a value a user or a site gave, never a word of ours.
CORPUS = [
    # user names
    "jdoe",
    "john_smith",
    "a.lovelace",
    "ghopper",
    "edsger.dijkstra",
    "Zoë_Müller",
    "o'brien",
    "lin-manuel",
    # slugs, projects, groups
    "acme-corp",
    "skunkworks",
    "q3-layoffs-plan",
    "payroll_team",
    "hr-confidential",
    "apollo-moonshot",
    # hostnames
    "db01",
    "web-prod-eu1",
    "nas.local",
    "build.internal",
    "db01.corp.example.com",
    "printer-floor3",
    # file paths
    "home/alice/Documents/tax_return",
    "etc/shadow",
    "var/lib/helios/secrets.yaml",
    "C:/Profiles/bob/Desktop/passwords.txt",
    # tokens and keys
    "ghp_abcdefghijklmnopqrstuvwxyz",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-2048-nightly-token",
    # phone numbers, dates, emails
    "+1-555-0100",
    "0049301234567",
    "1987-04-12",
    "12.04.1987",
    "alice@example.com",
    # Unicode lookalikes: KELVIN SIGN, fullwidth letters, Cyrillic
    "\u212aelvin",
    "\uff4a\uff44\uff4f\uff45\uff58",
    "\u0430dmin\u0445",
    # percent- and double-encoded forms (of "mallory" and "trudy")
    "%6Dallory",
    "%256D%2561%256C%256C%256F%2572%2579",
    "tr%75dy",
    "%2574rudy",
]


def words(value: str) -> set[str]:
    """The pieces of ``value`` that must never show up, in every form a leak could take."""
    forms = {value, unquote(value), unquote(unquote(value))}
    forms |= {unicodedata.normalize("NFKC", f) for f in forms}
    out: set[str] = set()
    for form in forms:
        for variant in (form, form.lower(), form.lower().replace("-", "_")):
            out |= {p for p in re.split(r"[/.@:+\s]", variant) if len(p) >= 4 and "%" not in p}
    return out


#: Pieces that are words of ours too (a status, a name's word, a schema word): searching
#: them would find our own text, so only the rest of each value is searched.
OURS = {"local", "build", "internal", "example"}
SECRETS = sorted(set().union(*(words(v) for v in CORPUS)) - OURS)


def test_the_corpus_is_worth_testing() -> None:
    assert len(CORPUS) >= 40 and len(SECRETS) >= 60
    # every form a leak could take is searched: raw, decoded twice, NFKC-folded, lower case
    assert {"mallory", "trudy", "kelvin", "jdoex", "john_smith", "lin_manuel"} <= set(SECRETS)


# -- the three apps and their paths --------------------------------------------------------------

FASTAPI_TEMPLATES = [
    # (path with {v}, name when the value makes a 2xx, whether a '/' in it still matches)
    ("/api/users/by-name/{v}", "users.by_name.get", False),
    ("/api/groups/{v}/members", "groups.members.list", False),
    ("/api/groups/eng/members/{v}", "groups.members.get", False),
    ("/api/hosts/{v}", "hosts.get", False),
    ("/api/files/{v}", "files.get", True),
    ("/api/v1/projects/{v}/builds/17", "projects.builds.get", False),
    ("/api/{v}", None, False),  # nothing routed
    ("/api/users/{v}", None, False),  # {user_id: int}: 422
]


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def starlette_app(t: Telemetry) -> Starlette:
    app = Starlette(
        routes=[
            Route("/api/users/by-name/{username}", ok),
            Route("/api/files/{path:path}", ok),
            Mount("/api/orgs/{org}", routes=[Route("/members/{member}", ok)]),
            Route("/api/hosts/{hostname}/", ok),
        ]
    )
    app.add_middleware(RouteTracking, telemetry=t)
    return app


STARLETTE_TEMPLATES = [
    ("/api/users/by-name/{v}", "users.by_name.get", False),
    ("/api/files/{v}", "files.get", True),
    ("/api/orgs/{v}/members/{v}", "orgs.members.get", False),
    ("/api/hosts/{v}/", "hosts.get", False),
]

RELAY_TEMPLATES = [
    ("/api/relay/users/{v}/groups", "users.groups.list", True),
    ("/api/relay/groups/{v}/members", "groups.members.list", True),
    ("/api/relay/widgets/{v}", "widgets.get", True),
    ("/api/relay/{v}", None, True),  # the upstream answers 404: not counted at all
    ("/api/relay/hosts/{v}", "unknown_name", True),
]


def url_path(template: str, value: str) -> str:
    return template.replace("{v}", quote(value, safe="/%+@:'"))


def paths(templates: list[tuple[str, str | None, bool]]) -> list[str]:
    return [url_path(t, v) for t, _, _ in templates for v in CORPUS]


def expected(templates: list[tuple[str, str | None, bool]]) -> Counter[str]:
    """The names the templates make for the corpus (a '/' in a value moves it elsewhere)."""
    out: Counter[str] = Counter()
    for _, name, slash_ok in templates:
        for value in CORPUS:
            if name is not None and (slash_ok or "/" not in unquote(unquote(value))):
                out[name] += 1
    return out


def request_all(app: ASGIApp, all_paths: list[str]) -> list[int]:
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        return [c.get(p).status_code for p in all_paths]


class Bodies:
    """The collector app, keeping every request body it received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        try:
            await self.app(scope, recording, send)
        finally:
            self.bodies.append(b"".join(chunks))


@pytest.fixture
def sharing(make_telemetry: Callable[..., Telemetry]) -> Iterator[Telemetry]:
    t = make_telemetry(enabled=None)
    t.set_enabled(True)  # as an administrator would: the worker sends it too
    yield t


def random_values(db_path: Path, worker_log: str) -> list[bytes]:
    """The random values an outbox holds: the instance's id and secret, the heartbeat ids,
    the payload hashes and the worker's lease owner (from its log). The search masks them
    first: a word of the corpus can be in one by chance ("db01" and "1987" are hex, and a
    hex id or hash holds one of them about once in 250 outboxes), or straddle one and the
    text stored before it (the meta key ``instance_secret`` then a secret that starts with
    "s" holds "secrets": once in 64)."""
    conn = sqlite3.connect(db_path)
    try:
        values = [
            str(v)
            for (v,) in conn.execute(
                "SELECT value FROM meta WHERE key IN (?, ?)",
                (Meta.INSTANCE_ID, Meta.INSTANCE_SECRET),
            )
        ]
        for row in conn.execute("SELECT id, payload_sha256 FROM heartbeats"):
            values += row
    finally:
        conn.close()
    values += re.findall(r"worker (\S+) holds ", worker_log)
    assert len(values) == 5, values  # id, secret, one heartbeat and its hash, one lease
    return [v.encode() for v in values]


def masked(blob: bytes, values: list[bytes]) -> bytes:
    for v in values:
        blob = blob.replace(v, b"\0")
    return blob


def test_no_text_of_any_url_reaches_the_outbox_the_wire_or_the_insights(
    sharing: Telemetry, db_path: Path, tmp_path: Path
) -> None:
    t = sharing
    fastapi_paths = paths(FASTAPI_TEMPLATES)
    starlette_paths = paths(STARLETTE_TEMPLATES)
    relay_paths = paths(RELAY_TEMPLATES)
    assert min(len(fastapi_paths), len(starlette_paths), len(relay_paths)) >= 150

    statuses = request_all(fastapi_app.create_app(t), fastapi_paths)
    assert Counter(statuses).keys() <= {200, 404, 422}
    statuses += request_all(starlette_app(t), starlette_paths)
    statuses += request_all(host_app.create_app(t), relay_paths)
    assert 500 not in statuses

    want = expected(FASTAPI_TEMPLATES) + expected(STARLETTE_TEMPLATES) + expected(RELAY_TEMPLATES)
    unknown = want.pop("unknown_name")
    assert stored(db_path) == {("api", name): n for name, n in want.items()}

    # The real worker delivers to the real collector, which records every body.
    collector_db = tmp_path / "collector.db"
    storage = Storage(str(collector_db))
    recorder = Bodies(create_app(storage, min_instances=1))  # one instance: publish all it sends
    try:
        with serve_in_thread(recorder) as collector:
            worker = subprocess.run(
                [sys.executable, "-m", "worker", "--once"],
                env=child_env(
                    HELIOS_TELEMETRY_DB=str(db_path),
                    HELIOS_TELEMETRY_ENDPOINT=collector.url + "/api/instances/heartbeat",
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert worker.returncode == 0, worker.stdout + worker.stderr
            insights = httpx.get(collector.url + "/api/insights?days=30", timeout=10).json()
    finally:
        storage.close()

    received = {
        name: int(count) for key in PAYLOAD_KEYS.values() for name, count in insights[key].items()
    }
    assert received == dict(want)
    assert insights["dropped"].get("unknown_name") == unknown

    randoms = random_values(db_path, worker.stderr)
    outbox_bytes = masked(
        b"\n".join(p.read_bytes() for p in db_path.parent.glob("telemetry.db*")), randoms
    )
    assert len(recorder.bodies) == 1 and json.loads(recorder.bodies[0])["api_usage"] == dict(want)
    wire = masked(recorder.bodies[0], randoms)
    published = json.dumps(insights, ensure_ascii=False).lower()
    leaks = {
        where: [w for w in SECRETS if w.encode() in blob or w.lower() in blob.decode("latin-1")]
        for where, blob in (("outbox", outbox_bytes), ("wire", wire))
    }
    leaks["insights"] = [w for w in SECRETS if w.lower() in published]
    assert leaks == {"outbox": [], "wire": [], "insights": []}
