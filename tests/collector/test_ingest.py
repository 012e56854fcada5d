"""The heartbeat endpoint's contract, on SQLite and PostgreSQL, through a real server."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from collector import Storage, create_app
from collector.schema import aggregated_metrics, instance_heartbeats, instances
from collector.server import serve_in_thread
from collector.validate import Limits
from outbox.contract import sha256_hex
from tests.collector.payloads import (
    DAY,
    IID,
    IID2,
    MIX,
    auth,
    auth_of,
    body,
    dumps,
    payload,
    totals,
)
from tests.support.clock import FakeClock
from tests.support.collector import Collector


def table_counts(c: Collector) -> dict[str, int]:
    def q(conn: sa.Connection) -> dict[str, int]:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (instance_heartbeats, aggregated_metrics, instances)
        }

    return c.storage.read(q)


def test_new_heartbeat_is_accepted_with_the_hash_of_its_body(collector: Collector) -> None:
    b = body()
    r = collector.post(b)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "accepted", "payload_sha256": sha256_hex(b)}
    assert collector.insights(days=7)["totals"] == totals(MIX)


def test_same_id_and_body_again_is_a_duplicate_counted_once(collector: Collector) -> None:
    b = body()
    first = collector.post(b)
    again = [
        collector.post(b, **{"Idempotency-Key": json.loads(b)["heartbeat_id"]}) for _ in range(3)
    ]
    assert first.json()["status"] == "accepted"
    for r in again:
        assert r.status_code == 200
        assert r.json() == {"status": "duplicate", "payload_sha256": sha256_hex(b)}
    assert collector.insights(days=7)["totals"] == totals(MIX)
    assert collector.insights(days=7)["heartbeats"] == {"received": 1, "missing": 0}


def test_same_id_with_another_body_is_409_and_changes_nothing(collector: Collector) -> None:
    original = payload()
    stored = dumps(original)
    assert collector.post(stored).json()["status"] == "accepted"
    before = (collector.insights(days=7), table_counts(collector))
    changed = dict(original, api_usage={"users.list": 13, "groups.get": 3})
    changed["days"] = json.loads(json.dumps(original["days"]))
    changed["days"][DAY]["api_usage"]["users.list"] = 8
    r = collector.post(dumps(changed))
    assert r.status_code == 409
    assert r.json()["field"] == "heartbeat_id"
    assert r.json()["payload_sha256"] == sha256_hex(stored)
    # Even the same document with other whitespace is another body.
    assert collector.post(json.dumps(original, indent=1).encode()).status_code == 409
    assert (collector.insights(days=7), table_counts(collector)) == before
    # The stored body is still recognised afterwards.
    assert collector.post(stored).json()["status"] == "duplicate"


def test_idempotency_key_must_equal_the_heartbeat_id(collector: Collector) -> None:
    doc = payload()
    r = collector.post(dumps(doc), **{"Idempotency-Key": "0b4f6c1e-0000-4000-8000-000000000000"})
    assert r.status_code == 422
    assert r.json()["field"] == "Idempotency-Key"
    ok = collector.post(dumps(doc), **{"Idempotency-Key": doc["heartbeat_id"]})
    assert ok.json()["status"] == "accepted"


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "a JSON object"),
        (b'"heartbeat"', "a JSON object"),
        (b'{"schema_version": 2}', "schema_version must be 1"),
        (b'{"schema_version": "1"}', "schema_version must be 1"),
        (b'{"schema_version": true}', "schema_version must be 1"),
        (b'{"schema_version": 1.0}', "schema_version must be 1"),
        (b"{}", "schema_version must be 1"),
        (b'{"schema_version": 1, "schema_version": 1}', "repeats the key"),
        (b'{"schema_version": NaN}', "not JSON"),
    ],
)
def test_unreadable_bodies_are_400(refusing: Collector, raw: bytes, what: str) -> None:
    r = refusing.post(raw)
    assert r.status_code == 400
    assert what in r.json()["error"]


def test_body_over_the_limit_is_413_by_content_length(serve: Callable[..., Collector]) -> None:
    c = serve(limits=Limits(max_body=2048))
    assert c.post(body()).status_code == 200
    big = b"{" + b" " * 4096 + b"}"
    r = c.post(big)
    assert r.status_code == 413
    assert "limit is 2048" in r.json()["error"]


def test_chunked_body_over_the_limit_is_413_while_reading(
    serve: Callable[..., Collector],
) -> None:
    c = serve(limits=Limits(max_body=2048))

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 KiB in all, no Content-Length
            yield b" " * 1024

    r = c.http.post(
        "/api/instances/heartbeat",
        content=chunks(),
        headers={"Content-Type": "application/json", **auth(IID)},
    )
    assert r.status_code == 413
    # A chunked body within the limit is fine.
    ok = c.http.post(
        "/api/instances/heartbeat",
        content=iter([body()]),
        headers={"Content-Type": "application/json", **auth(IID)},
    )
    assert ok.json()["status"] == "accepted"


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415(collector: Collector, ctype: str | None) -> None:
    headers = auth(IID) if ctype is None else {"Content-Type": ctype, **auth(IID)}
    r = collector.http.post("/api/instances/heartbeat", content=body(), headers=headers)
    assert r.status_code == 415
    ok = collector.post(body(), **{"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


HOSTILE = [
    "alice@example.com",
    "db01.example.com",
    "users'; DROP TABLE aggregated_metrics; --",
    "Robert'); DELETE FROM instances;--",
    "users.list OR 1=1",
    "10.0.0.1",
    "5d0c0000-0000-4000-8000-000000000001",
    "üsers.list",
    "users.\u202elist",
    "users\x00list",
    "<script>alert(1)</script>",
    "a" * 65,
    "x" * 10_000,
    "users..list",
    "Users.List",
    "",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_are_422_and_nothing_is_stored(refusing: Collector, name: str) -> None:
    counts = {("api", name, DAY): 1, ("api", "users.list", DAY): 2}
    r = refusing.post(body(counts))
    assert r.status_code == 422
    field = r.json()["field"]
    assert field.startswith("api_usage.") or field.startswith("days.")
    assert len(field) < 200  # a 10 kB name is not echoed back whole
    assert table_counts(refusing) == {
        "instance_heartbeats": 0,
        "aggregated_metrics": 0,
        "instances": 0,
    }


def test_gaps_in_the_sequence_are_recorded_and_filled(collector: Collector) -> None:
    for seq in (1, 2, 6, 4, 9):
        assert collector.post(body(sequence=seq)).json()["status"] == "accepted"
    info = collector.instance(IID).json()
    assert info["last_sequence"] == 9
    assert info["heartbeats"] == 5
    assert info["gaps"] == [[3, 3], [5, 5], [7, 8]]
    assert info["missing"] == 4
    assert info["repeats"] == 0
    for seq in (7, 3, 8, 8):  # the 8 twice: a repeat under another heartbeat id
        collector.post(body(sequence=seq))
    info = collector.instance(IID).json()
    assert info["gaps"] == [[5, 5]]
    assert info["missing"] == 1
    assert info["repeats"] == 1
    assert collector.insights()["heartbeats"] == {"received": 9, "missing": 1}


def test_first_heartbeat_after_one_counts_the_earlier_as_missing(collector: Collector) -> None:
    collector.post(body(sequence=4))
    info = collector.instance(IID).json()
    assert info["gaps"] == [[1, 3]]
    assert info["missing"] == 3


def test_instance_record_follows_the_newest_heartbeat(collector: Collector) -> None:
    clock = collector.clock
    collector.post(body(sequence=1, version="1.4.2"))
    clock.advance(3600)
    collector.post(body(sequence=3, version="1.5.0", edition="licensed"))
    clock.advance(3600)
    collector.post(body(sequence=2, version="1.4.9"))  # late: does not roll the version back
    info = collector.instance(IID).json()
    assert (info["version"], info["edition"]) == ("1.5.0", "licensed")
    assert info["last_seen"] - info["first_seen"] == 7200
    assert info["totals"] == {"api": 45, "command": 3, "ui": 6}
    assert collector.instance(IID2).status_code == 404
    assert collector.http.get("/api/instances/not-a-uuid").status_code == 404
    r = collector.http.get("/api/instances/heartbeat")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")


def test_racing_duplicates_of_one_id_are_counted_once(collector: Collector) -> None:
    b = body()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: collector.post(b), range(64)))
    statuses = sorted(r.json()["status"] for r in results)
    assert [r.status_code for r in results] == [200] * 64
    assert statuses.count("accepted") == 1
    assert statuses.count("duplicate") == 63
    assert collector.insights(days=7)["totals"] == totals(MIX)


def test_racing_different_bodies_under_one_id(collector: Collector) -> None:
    hid = "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70"
    bodies = [body({("api", "users.list", DAY): n}, heartbeat_id=hid) for n in range(1, 9)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: collector.post(bodies[i % 8]), range(64)))
    accepted = [
        r.json()["payload_sha256"]
        for r in results
        if r.status_code == 200 and r.json()["status"] == "accepted"
    ]
    assert len(accepted) == 1
    winner = bodies[[sha256_hex(b) for b in bodies].index(accepted[0])]
    n = json.loads(winner)["api_usage"]["users.list"]
    for i, r in enumerate(results):
        if bodies[i % 8] == winner:
            assert r.status_code == 200
        else:
            assert r.status_code == 409, r.text
            assert r.json()["payload_sha256"] == accepted[0]
    assert collector.insights(days=1)["totals"]["api"] == n


def test_64_concurrent_instances_are_all_stored(collector: Collector) -> None:
    def send(i: int) -> httpx.Response:
        iid = f"5d0c0000-0000-4000-8000-{i:012d}"
        return collector.post(body(instance_id=iid))

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(send, range(256)))
    assert [r.text for r in results if r.status_code != 200] == []
    assert {r.json()["status"] for r in results} == {"accepted"}
    doc = collector.insights(days=7)
    assert doc["totals"] == {k: 256 * v for k, v in totals(MIX).items()}
    assert doc["instances"]["active_7d"] == 256


def test_dropped_counts_are_kept_by_reason(collector: Collector) -> None:
    collector.post(body(dropped={"invalid_name": 3, "over_capacity": 2, "unknown_name": 4}))
    collector.post(body(dropped={"invalid_name": 1}, instance_id=IID2))
    assert collector.insights(days=1)["dropped"] == {
        "invalid_name": 4,
        "over_capacity": 2,
        "unknown_name": 4,
    }


def test_a_heartbeat_with_only_drops_is_accepted(collector: Collector) -> None:
    r = collector.post(body({}, dropped={"storage_error": 5}))
    assert r.json()["status"] == "accepted"
    doc = collector.insights(days=1)
    assert doc["totals"] == {"api": 0, "command": 0, "ui": 0}
    assert doc["dropped"] == {"storage_error": 5}
    assert doc["instances"]["active_7d"] == 1


def test_two_collectors_on_one_database_count_each_heartbeat_once(
    db_target: str, clock: FakeClock, http_client: httpx.Client
) -> None:
    """Two collector processes' worth (two storages, two servers) on one database:
    both create the schema at once, then receive the same heartbeats concurrently."""
    storages = [Storage(db_target, busy_timeout=10) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        apps = list(pool.map(lambda s: create_app(s, clock=clock), storages))
    bodies = [body(instance_id=f"5d0c0000-0000-4000-8000-{i:012d}") for i in range(40)]
    with serve_in_thread(apps[0]) as one, serve_in_thread(apps[1]) as two:
        urls = [f"{one.url}/api/instances/heartbeat", f"{two.url}/api/instances/heartbeat"]

        def send(i: int) -> str:
            r = http_client.post(
                urls[i % 2],
                content=bodies[i // 2 % 40],
                headers={"Content-Type": "application/json", **auth_of(bodies[i // 2 % 40])},
            )
            assert r.status_code == 200, r.text
            return str(r.json()["status"])

        with ThreadPoolExecutor(16) as pool:
            statuses = Counter(pool.map(send, range(160)))  # each body 4 times, 2 per server
        doc = http_client.get(f"{two.url}/api/insights", params={"days": 7}).json()
    for s in storages:
        s.close()
    assert statuses == {"accepted": 40, "duplicate": 120}
    assert doc["totals"] == {k: 40 * v for k, v in totals(MIX).items()}
    assert doc["heartbeats"] == {"received": 40, "missing": 0}
