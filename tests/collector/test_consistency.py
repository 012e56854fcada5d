"""The totals always equal the sum of the stored bodies, whatever arrives in what order."""

from __future__ import annotations

import random
from collections import Counter

import sqlalchemy as sa

from collector.records import sum_rows
from collector.schema import aggregated_metrics, instance_heartbeats
from collector.validate import NO_LIMITS, parse
from tests.collector.payloads import body
from tests.support.collector import Collector

NAMES = ["users.list", "users.get", "groups.list", "sync", "export", "bulk_edit"]


def aggregates(c: Collector) -> Counter[tuple[str, str, str]]:
    a = aggregated_metrics

    def q(conn: sa.Connection) -> Counter[tuple[str, str, str]]:
        return Counter(
            {
                (d, k, n): int(v)
                for d, k, n, v in conn.execute(sa.select(a.c.day, a.c.kind, a.c.name, a.c["count"]))
            }
        )

    return c.storage.read(q)


def from_bodies(c: Collector) -> Counter[tuple[str, str, str]]:
    def q(conn: sa.Connection) -> Counter[tuple[str, str, str]]:
        rows = conn.execute(sa.select(instance_heartbeats.c.body)).scalars()
        return Counter(sum_rows(parse(bytes(b), limits=NO_LIMITS) for b in rows))

    return c.storage.read(q)


def test_random_sends_resends_conflicts_and_forgets(collector: Collector) -> None:
    rng = random.Random(11)
    instances = [f"5d0c0000-0000-4000-8000-{i:012d}" for i in range(6)]
    sequence: Counter[str] = Counter()
    sent: list[bytes] = []
    statuses: Counter[int] = Counter()
    for step in range(120):
        roll = rng.random()
        if roll < 0.15 and sent:
            b = rng.choice(sent)  # a resend
        elif roll < 0.2 and sent:
            b = rng.choice(sent).replace(b'"sequence":', b'"sequence": ')  # same id, other bytes
        elif roll < 0.25:
            collector.forget(rng.choice(instances))
            continue
        else:
            iid = rng.choice(instances)
            sequence[iid] += rng.choice([1, 1, 1, 2])  # now and then one is lost
            kinds = {
                "users.list": "api",
                "users.get": "api",
                "groups.list": "api",
                "sync": "command",
                "export": "command",
                "bulk_edit": "ui",
            }
            counts = {
                (kinds[n], n, f"2026-11-{rng.randint(20, 25)}"): rng.randint(1, 50)
                for n in rng.sample(NAMES, rng.randint(0, 4))
            }
            b = body(
                counts,
                instance_id=iid,
                sequence=sequence[iid],
                dropped={"invalid_name": rng.randint(0, 2)},
            )
            sent.append(b)
        statuses[collector.post(b).status_code] += 1
        if step % 20 == 19:
            assert aggregates(collector) == from_bodies(collector)
    assert aggregates(collector) == from_bodies(collector)
    assert set(statuses) == {200, 409}
    assert all(v > 0 for v in aggregates(collector).values())  # no rows left at zero
