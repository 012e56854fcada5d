"""Hostile input, fuzzed with hypothesis (derandomized: the same examples every run).

* Track names: arbitrary text, emails, IPs, UUIDs, hostnames, SQL, huge strings,
  unicode. Each is stored exactly when the name rules allow it, else counted as
  ``invalid_name``; no PII-shaped string ever appears in a sealed payload. Relayed
  requests and route templates are named from declared words only: whatever the
  path, a name is made of those words and a verb, never of the path's text.
* The UI-action endpoint of the example host app: arbitrary bytes and JSON, huge
  bodies. Never a 500; a refused body stores nothing and counts exactly what the
  validation says; only declared names are ever stored.
* The collector's ingest endpoint: near-valid payloads (one mutation of a valid
  one) against the real server. Never a 500; a refused body leaves no trace in the
  collector's database (its id is not in the file). Schemathesis's own run is in
  ``tests/collector/test_openapi.py``; here it runs again in negative mode only,
  checking that nothing it sends is stored.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import Storage
from examples.host_app import UI_ACTIONS
from examples.host_app import create_app as host_app
from outbox import Telemetry, heartbeats, store
from outbox.contract import is_valid_name
from outbox.web import validation
from outbox.web.naming import DEFAULT_RELAY_RESOURCES, VERBS, Vocabulary, segment_key
from tests.collector.payloads import IID, payload
from tests.proof.harness import pii_in_names, record
from tests.support.clock import FakeClock
from tests.support.collector import Collector, auth
from tests.support.totals import totals
from tests.web.conftest import SAME_ORIGIN, Client

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ----------------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
hostnames = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "net", "org", "io", "local", "internal", "example", "co"]),
)
emails = st.emails().map(str)
ips = st.ip_addresses().map(str)
uuids = st.uuids().map(lambda u: str(u) if u.int % 2 else u.hex)
long_hex = st.from_regex(r"[0-9a-f]{12,40}", fullmatch=True)
sql = st.sampled_from(
    [
        "'; DROP TABLE events; --",
        "users.list'); DELETE FROM events; --",
        'x" OR 1=1 --',
        "users.list\x00hidden",
        "users.list; ATTACH DATABASE '/tmp/x' AS x",
    ]
)
huge = st.sampled_from(["a" * 65, "users." * 2000, "é" * 100_000, "a" * 1_000_000])
looks_valid = st.from_regex(r"[a-z][a-z0-9_]{0,12}(\.[a-z][a-z0-9_]{0,12}){0,3}", fullmatch=True)
#: a valid-looking name with a PII-shaped thing glued on
glued = st.builds(
    lambda base, pii, sep: f"{base}{sep}{pii}",
    looks_valid,
    st.one_of(hostnames, emails, ips, uuids, long_hex),
    st.sampled_from([".", "_", "", "/", "@"]),
)
names = st.one_of(st.text(), looks_valid, hostnames, emails, ips, uuids, long_hex, sql, huge, glued)


# -- track names -----------------------------------------------------------------------------------


def test_fuzzed_track_names_are_stored_or_counted_and_no_pii_leaves(tmp_path: Path) -> None:
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={}, clock=FakeClock())
    kinds: Counter[str] = Counter()
    expected: Counter[tuple[str, str]] = Counter()
    refused = 0

    @FUZZ
    @given(name=names, kind=st.sampled_from(["api", "command", "ui"]))
    def one(name: str, kind: str) -> None:
        nonlocal refused
        stored = t.track(kind, name)  # type: ignore[arg-type]
        assert stored is is_valid_name(name)
        kinds["examples"] += 1
        if stored:
            expected[(kind, name)] += 1
        else:
            refused += 1

    one()
    with t.connect() as conn:
        assert totals(db) == dict(expected)
        assert store.drops(conn).pending["invalid_name"] == refused
        hb = heartbeats.commit_seal(
            conn,
            heartbeats.plan_seal(conn),
            heartbeat_id=str(uuid.uuid4()),
            now=int(FakeClock()()),
            version="1.4.2",
            edition="community",
        )
        assert hb is not None
        sealed = json.loads(hb.payload)
    t.close()
    assert pii_in_names(sealed) == []
    assert sealed["dropped"]["invalid_name"] == refused
    assert refused > 0 and len(expected) > 0
    record(
        "hostile_names",
        examples=kinds["examples"],
        stored=sum(expected.values()),
        refused_invalid_name=refused,
        pii_in_payload=0,
    )


WORDS = st.sampled_from(["users", "Users", "groups", "members", "memberOf", "v1", "audit-logs"])
PII = st.one_of(LABEL, emails, ips, uuids, long_hex, hostnames, st.text(max_size=20))


def test_relayed_request_names_are_made_of_declared_words_only() -> None:
    named: Counter[bool] = Counter()

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "BREW"]),
        first=WORDS,  # the first segment must be declared for any name at all
        rest=st.lists(st.one_of(WORDS, PII), max_size=6),
    )
    def one(method: str, first: str, rest: list[str]) -> None:
        path = "/" + "/".join([first, *rest])
        name = RELAY.name(method.upper(), path)
        named[name is not None] += 1
        # A known verb on a declared top-level resource is always named, after that resource.
        resource = segment_key(first)
        if method.upper() in VERBS and resource in RELAY.tree:
            assert name is not None, (method, path)
            assert name.split(".")[0] == resource, (path, name)
        if name is not None:
            assert is_valid_name(name)
            *words, verb = name.split(".")
            assert verb in ALL_VERBS
            assert set(words) <= DECLARED_WORDS, (path, name)
            assert pii_in_names({"api_usage": {name: 1}}) == []

    one()
    # Most examples have a known verb and a declared first word: most are named, not all.
    assert named[True] > FUZZ.max_examples // 3, named
    assert named[False] > 0, named


RELAY = Vocabulary.build(DEFAULT_RELAY_RESOURCES)
DECLARED_WORDS = {w for r in DEFAULT_RELAY_RESOURCES for w in r.split(".")}
ALL_VERBS = {v for pair in VERBS.values() for v in pair}


# -- the UI-action endpoint ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=20,
)
ui_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.one_of(st.sampled_from(UI_ACTIONS), names.filter(lambda n: len(n) < 100)),
        st.one_of(st.integers(-5, 2000), st.just(True), st.just(1.5), st.just("1")),
        max_size=8,
    ).map(lambda a: json.dumps({"actions": a}).encode()),
    st.dictionaries(
        st.one_of(st.sampled_from(UI_ACTIONS), looks_valid),
        st.integers(1, 1000),
        min_size=1,
        max_size=5,
    ).map(lambda a: json.dumps({"actions": a}).encode()),
)


def drops(db: Path) -> dict[str, int]:
    import sqlite3

    c = sqlite3.connect(db)
    try:
        return {str(r): int(n) for r, n in c.execute("SELECT reason, pending FROM dropped")}
    finally:
        c.close()


def test_fuzzed_ui_action_bodies_never_500_and_refusals_are_counted(tmp_path: Path) -> None:
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={})
    client = Client(host_app(t))
    statuses: Counter[int] = Counter()
    stored: Counter[str] = Counter()
    invalid = unknown = 0
    headers = {**SAME_ORIGIN, "Content-Type": "application/json"}

    @FUZZ
    @given(body=ui_bodies)
    def one(body: bytes) -> None:
        nonlocal invalid, unknown
        r = client.post("/api/telemetry/ui-actions", content=body, headers=headers)
        statuses[r.status_code] += 1
        verdict = validation.parse_ui_actions(body, UI_ACTIONS)
        if isinstance(verdict, validation.Rejection):
            assert r.status_code == verdict.status, r.text
            invalid += verdict.dropped
        else:
            assert r.status_code == 202, r.text
            stored.update(verdict.declared)
            unknown += sum(verdict.unknown.values())
            invalid += verdict.invalid  # bad entries of a usable batch

    one()
    # Bodies past the limit: by Content-Length, and streamed without one.
    big = json.dumps({"actions": {"bulk_edit": 1}, "pad": "x" * validation.MAX_BODY_BYTES})

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(10):
            yield b"{" + b" " * 1024 * 1024

    for content in (big.encode(), streamed()):
        r = client.post("/api/telemetry/ui-actions", content=content, headers=headers)
        assert r.status_code == 413, r.text
        statuses[r.status_code] += 1
        invalid += 1
    t.close()
    assert 500 not in statuses
    assert set(statuses) <= {202, 400, 413, 415, 422}
    assert totals(db) == {("ui", n): c for n, c in stored.items()}
    assert set(stored) <= set(UI_ACTIONS)
    d = drops(db)
    assert (d["invalid_name"], d["unknown_name"]) == (invalid, unknown)
    record(
        "hostile_ui_actions",
        requests=sum(statuses.values()),
        statuses=dict(sorted(statuses.items())),
        stored=sum(stored.values()),
        refused_counted_invalid_name=invalid,
        unknown_name=unknown,
        http_500=0,
    )


# -- the collector's ingest endpoint -------------------------------------------------------------


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    with Collector(Storage(tmp_path / "collector.db")).start() as c:
        yield c


BAD_VALUES = [0, -1, 1.5, "1", True, None, 2**63, 2**53, [], {}, "x" * 300]


def mutate(doc: dict[str, Any], how: str, data: st.DataObject) -> tuple[dict[str, Any], str]:
    """One change to a valid payload; returns it and what was done."""
    d = copy.deepcopy(doc)
    if how == "name":
        bad = data.draw(st.one_of(hostnames, emails, ips, uuids, long_hex, st.text(max_size=70)))
        d["api_usage"][bad] = 1
        next(iter(d["days"].values()))["api_usage"][bad] = 1
    elif how == "count":
        key = data.draw(st.sampled_from(["api_usage", "command_usage", "ui_actions"]))
        name = next(iter(d[key]))
        d[key][name] = data.draw(st.sampled_from(BAD_VALUES))
    elif how == "drop_key":
        del d[data.draw(st.sampled_from(sorted(d)))]
    elif how == "extra_key":
        d[data.draw(st.text(min_size=1, max_size=20))] = data.draw(json_values)
    elif how == "field":
        key = data.draw(st.sampled_from(["schema_version", "sequence", "period_start", "app"]))
        d[key] = data.draw(st.one_of(st.sampled_from(BAD_VALUES), json_values))
    elif how == "sums":
        d["command_usage"]["sync"] = d["command_usage"]["sync"] + 1
    elif how == "dropped":
        d["dropped"] = data.draw(st.dictionaries(st.text(max_size=10), st.integers(), max_size=4))
    elif how == "days":
        d["days"][data.draw(st.text(max_size=12))] = data.draw(json_values)
    return d, how


MUTATIONS = ["name", "count", "drop_key", "extra_key", "field", "sums", "dropped", "days", "none"]


def test_near_valid_payloads_never_500_and_refused_leave_no_trace(
    collector: Collector, tmp_path: Path
) -> None:
    statuses: Counter[int] = Counter()
    refused_ids: list[str] = []
    accepted: list[str] = []
    by_mutation: Counter[str] = Counter()

    with httpx.Client(timeout=30, trust_env=False) as http:

        @FUZZ
        @given(how=st.sampled_from(MUTATIONS), data=st.data(), raw=st.sampled_from([0, 0, 0, 1]))
        def one(how: str, data: st.DataObject, raw: int) -> None:
            hid = str(uuid.uuid4())
            doc, _ = mutate(payload(heartbeat_id=hid), how, data)
            body = json.dumps(doc).encode()
            if raw:  # broken JSON around the same id
                body = body[: data.draw(st.integers(0, len(body) - 1))] + hid.encode()
            r = http.post(
                collector.endpoint,
                content=body,
                headers={"Content-Type": "application/json", **auth(IID)},  # the instance's
            )
            statuses[r.status_code] += 1
            by_mutation[how] += 1
            assert r.status_code in (200, 400, 409, 413, 415, 422), r.text
            if r.status_code == 200:
                assert r.json()["status"] == "accepted"
                accepted.append(hid)
            else:
                assert "error" in r.json()
                refused_ids.append(hid)

        one()
    collector.stop()
    stored_ids = {h["heartbeat_id"] for h in collector.heartbeats()}
    assert stored_ids == set(accepted)
    collector.storage.close()
    raw_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("collector.db*") if p.is_file())
    leaked = [hid for hid in refused_ids if hid.encode() in raw_bytes]
    assert leaked == []
    assert 500 not in statuses and len(refused_ids) > 0
    record(
        "hostile_collector_payloads",
        requests=sum(statuses.values()),
        statuses=dict(sorted(statuses.items())),
        accepted=len(accepted),
        refused=len(refused_ids),
        refused_found_in_database=0,
        http_500=0,
    )


@pytest.mark.slow
def test_schemathesis_negative_mode_stores_nothing(tmp_path: Path) -> None:
    with Collector(Storage(tmp_path / "collector.db")).start() as c:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{c.url}/openapi.json",
                "--mode",
                "negative",
                "--include-path",
                "/api/instances/heartbeat",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "200",
                "--seed",
                "11",
                "--header",  # past the credential check, into validation
                f"Authorization: {auth(IID)['Authorization']}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        stored = len(c.heartbeat_ids())
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout
    assert stored == 0
    record("hostile_schemathesis_negative", max_examples=200, seed=11, stored=0, http_500=0)
