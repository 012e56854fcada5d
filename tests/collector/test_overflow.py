"""Totals that cannot overflow (issue 14, finding 1), on SQLite and PostgreSQL.

The attack: a heartbeat of 1,100 names each counting 2⁵³−1 took the dashboard down
(SQLite's SUM overflowed), 1,026 of them turned a total into an inexact REAL, and the
instance could then not be forgotten (an OverflowError binding the subtraction).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa

from collector import Storage
from collector.schema import aggregated_metrics, instance_heartbeats, instances, rebuild_rollups
from collector.validate import MAX_DAY_COUNT, MAX_DAY_TOTAL
from outbox.contract import secret_hash
from tests.collector.payloads import DAY, IID, IID2, MIX, body, dumps, payload, secret_for, totals
from tests.support.collector import Collector

BIG = 2**53 - 1
INT64_MAX = 2**63 - 1


def attack(n_names: int = 1100, count: int = BIG) -> bytes:
    """Built by hand: the outbox's own builder caps names at 200 per kind."""
    doc = payload({})
    names = {f"users.n{i}": count for i in range(n_names)}
    doc["api_usage"] = names
    doc["days"] = {DAY: {"api_usage": names, "command_usage": {}, "ui_actions": {}}}
    return dumps(doc)


def rows(c: Collector) -> dict[tuple[str, str, str], object]:
    a = aggregated_metrics
    return c.storage.read(
        lambda conn: {
            (d, k, n): v
            for d, k, n, v in conn.execute(sa.select(a.c.day, a.c.kind, a.c.name, a.c["count"]))
        }
    )


def test_the_overflow_heartbeat_is_422_and_the_dashboard_stays_up(collector: Collector) -> None:
    c = collector
    c.post(body())
    before = c.insights(days=7)
    r = c.post(attack())
    assert len(attack()) > 30_000
    assert r.status_code == 422
    assert r.json()["field"] == f"days.{DAY}.api_usage.users.n0"
    assert f"between 1 and {MAX_DAY_COUNT}" in r.json()["error"]
    assert c.http.get("/insights").status_code == 200
    assert c.insights(days=7) == before
    assert before["totals"] == totals(MIX)


def test_a_day_worth_more_than_a_real_instance_counts_is_422(collector: Collector) -> None:
    r = collector.post(attack(n_names=11, count=MAX_DAY_COUNT))
    assert (r.status_code, r.json()["field"]) == (422, f"days.{DAY}")
    assert str(MAX_DAY_TOTAL) in r.json()["error"]
    ok = collector.post(attack(n_names=10, count=MAX_DAY_COUNT))  # exactly the bound
    assert ok.json()["status"] == "accepted"
    assert collector.insights(days=7)["totals"]["api"] == MAX_DAY_TOTAL


def test_1026_heartbeats_at_the_bound_then_plus_3_stay_exact(
    serve: Callable[..., Collector],
) -> None:
    """The REAL finding: 1,026 heartbeats of users.list at the per-day bound, then a real
    +3: the total is the exact integer, stored as an integer."""
    c = serve(max_batch=64)
    for seq in range(1, 1027):
        r = c.post(body({("api", "users.list", DAY): MAX_DAY_COUNT}, sequence=seq))
        assert r.status_code == 200, r.text
    c.post(body({("api", "users.list", DAY): 3}, sequence=1027))
    want = 1026 * MAX_DAY_COUNT + 3
    assert rows(c) == {(DAY, "api", "users.list"): want}
    assert type(rows(c)[(DAY, "api", "users.list")]) is int
    assert c.insights(days=1)["totals"]["api"] == want
    assert c.http.get("/insights?days=1").status_code == 200


def seed(storage: Storage, counts: dict[tuple[str, str, str], int]) -> None:
    """Write aggregate rows straight into the database (what a database filled before
    the bounds existed can hold)."""
    storage.migrate(now=0)
    rows = [{"day": d, "kind": k, "name": n, "count": v} for (d, k, n), v in counts.items()]
    storage.write(lambda conn: conn.execute(sa.insert(aggregated_metrics), rows))
    storage.write(rebuild_rollups)  # what the upgrade to version 3 does with such rows


def test_sums_past_64_bits_are_exact_on_the_page_and_in_the_json(
    storage: Storage, serve: Callable[..., Collector]
) -> None:
    days = ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25"]
    seed(storage, {(d, "api", "users.list"): INT64_MAX for d in days})
    seed_drop = {
        (DAY, "dropped", "over_capacity"): INT64_MAX,
        ("2026-11-24", "dropped", "over_capacity"): 5,
    }
    storage.write(
        lambda conn: conn.execute(
            sa.insert(aggregated_metrics),
            [{"day": d, "kind": k, "name": n, "count": v} for (d, k, n), v in seed_drop.items()],
        )
    )
    storage.write(rebuild_rollups)
    c = serve(min_instances=1)
    doc = c.insights(days=7)
    assert doc["totals"]["api"] == 5 * INT64_MAX  # past 2**65: exact, not a float
    assert doc["other"]["api"] == 5 * INT64_MAX  # no instance reported it: not listed
    assert doc["dropped"] == {"over_capacity": INT64_MAX + 5}
    assert [d["api"] for d in doc["daily"][-5:]] == [INT64_MAX] * 5
    page = c.http.get("/insights?days=7")
    assert page.status_code == 200
    assert f'data-testid="total-api">{5 * INT64_MAX:,}<' in page.text


def test_an_addition_past_64_bits_fails_that_heartbeat_not_the_totals(
    storage: Storage, serve: Callable[..., Collector]
) -> None:
    seed(storage, {(DAY, "api", "users.list"): INT64_MAX - 10})
    c = serve()
    r = c.post(body({("api", "users.list", DAY): 20}))
    assert r.status_code == 500
    assert r.json() == {"error": "the collector's database failed; try again later"}
    assert rows(c) == {(DAY, "api", "users.list"): INT64_MAX - 10}  # not a REAL 9.2e18
    assert (
        c.storage.read(
            lambda conn: conn.execute(sa.select(sa.func.count()).select_from(instance_heartbeats))
        ).scalar_one()
        == 0
    )
    ok = c.post(body({("api", "users.list", DAY): 10}))
    assert ok.json()["status"] == "accepted"
    assert rows(c) == {(DAY, "api", "users.list"): INT64_MAX}
    assert c.http.get("/insights").status_code == 200


def test_forget_works_for_an_instance_whose_bodies_outgrew_64_bits(
    storage: Storage, serve: Callable[..., Collector]
) -> None:
    """1,026 bodies of users.list = 2⁵³−1, stored before the bounds (so never validated
    by them): their sum does not fit a 64-bit parameter. Forget subtracts what the row
    holds and deletes it; before, it was a plain-text 500 (OverflowError)."""
    storage.migrate(now=0)
    bodies = [
        body({("api", "users.list", DAY): BIG}, sequence=s, heartbeat_id=None)
        for s in range(1, 1027)
    ]
    h = instance_heartbeats

    def fill(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(h),
            [
                {
                    "heartbeat_id": json.loads(b)["heartbeat_id"],
                    "instance_id": IID,
                    "sequence": s,
                    "payload_sha256": "0" * 64,
                    "received_at": 0,
                    "period_start": 0,
                    "period_end": 0,
                    "edition": "community",
                    "version": "1.4.2",
                    "size": len(b),
                    "body": b,
                }
                for s, b in enumerate(bodies, 1)
            ],
        )
        conn.execute(
            sa.insert(instances),
            {
                "instance_id": IID,
                "first_seen": 0,
                "last_seen": 0,
                "edition": "community",
                "version": "1.4.2",
                "last_sequence": 1026,
                "heartbeats": 1026,
                "missing": 0,
                "repeats": 0,
                "secret_hash": secret_hash(secret_for(IID)),
            },
        )
        conn.execute(
            sa.insert(aggregated_metrics),
            {"day": DAY, "kind": "api", "name": "users.list", "count": INT64_MAX},
        )
        rebuild_rollups(conn)

    storage.write(fill)
    c = serve()
    c.post(body({("api", "users.list", DAY): 4}, instance_id=IID2))  # someone else's 4
    assert rows(c) == {(DAY, "api", "users.list"): INT64_MAX}  # the guard refused the +4
    r = c.forget(IID)
    assert r.status_code == 200, r.text
    assert r.json()["heartbeats"] == 1026
    assert r.json()["counts"] == 1026 * BIG  # reported exactly, beyond 64 bits
    assert rows(c) == {}
    assert c.post(body({("api", "users.list", DAY): 4}, instance_id=IID2)).status_code == 200
    assert c.insights(days=1)["totals"]["api"] == 4
