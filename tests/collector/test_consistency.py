"""The totals always equal the sum of the stored bodies, whatever arrives in what order."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from collector import Storage
from collector.errors import CollectorError
from collector.insights import DAY, collect, per_name, received_since, window
from collector.records import day_counts, sum_rows
from collector.schema import (
    ROLLUPS,
    aggregated_metrics,
    instance_days,
    instance_heartbeats,
    name_instances,
    rebuild_rollups,
)
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
    """What the kept bodies and the folded day rows (``instance_days``) add up to."""

    def q(conn: sa.Connection) -> Counter[tuple[str, str, str]]:
        rows = conn.execute(sa.select(instance_heartbeats.c.body)).scalars()
        out = Counter(sum_rows(parse(bytes(b), limits=NO_LIMITS) for b in rows if b))
        d = instance_days
        for day, counts in conn.execute(sa.select(d.c.day, d.c.counts)):
            for key, n in day_counts(counts).items():
                kind, name = key.split(" ", 1)
                out[(day, kind, name)] += n
        return out

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
        elif roll < 0.29:  # fold the bodies received up to now, keep later ones
            collector.storage.fold(before=int(collector.clock()), chunk=rng.choice([1, 3, 50]))
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
        collector.clock.advance(rng.choice([0, 60]))
        if step % 20 == 19:
            assert aggregates(collector) == from_bodies(collector)
    assert aggregates(collector) == from_bodies(collector)
    assert set(statuses) == {200, 409}
    assert all(v > 0 for v in aggregates(collector).values())  # no rows left at zero


class Rollback(CollectorError):
    """Carries a result out of a write transaction that must not commit."""


def rollups(conn: sa.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the derived tables, and the span starts/ends of every day row."""
    a = aggregated_metrics
    out = {
        t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)) if any(r[-4:])) for t in ROLLUPS
    }
    out["spans"] = sorted(
        tuple(r) for r in conn.execute(sa.select(a.c.day, a.c.kind, a.c.name, a.c.starts, a.c.ends))
    )
    return out


def normalized(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, object]:
    """Rollups with each two-halves count joined (the halves may be split differently)."""
    out: dict[str, object] = dict(rows)
    out["metric_months"] = sorted(
        (mo, k, n, (int(hi) << 32) + int(lo), s, e)
        for mo, k, n, hi, lo, s, e in rows["metric_months"]
        if (int(hi) << 32) + int(lo) or s or e
    )
    out["day_totals"] = sorted(
        (d, k, (int(hi) << 32) + int(lo))
        for d, k, hi, lo in rows["day_totals"]
        if (int(hi) << 32) + int(lo)
    )
    out["receipt_days"] = sorted(r for r in rows["receipt_days"] if r[1])
    return out


def direct(conn: sa.Connection, first: str, last: str) -> dict[tuple[str, str], list[int]]:
    """(kind, name) → [count over the window, instances whose span overlaps it], read the
    slow way: every day row of the window, every span."""
    a, n = aggregated_metrics, name_instances
    out: dict[tuple[str, str], list[int]] = {}
    for kind, name, count in conn.execute(
        sa.select(a.c.kind, a.c.name, a.c["count"]).where((a.c.day >= first) & (a.c.day <= last))
    ):
        out.setdefault((kind, name), [0, 0])[0] += int(count)
    for kind, name in conn.execute(
        sa.select(n.c.kind, n.c.name).where((n.c.last_day >= first) & (n.c.first_day <= last))
    ):
        out.setdefault((kind, name), [0, 0])[1] += 1
    return out


def test_the_rollups_answer_every_window_as_the_rows_do(collector: Collector) -> None:
    """Counts over months (and days ahead of the collector's clock), span starts and ends
    moving, forgets, receipts on many days: the rollups always equal what
    ``rebuild_rollups`` computes from the stored rows, and every window's per-name counts,
    instances, daily totals and heartbeats equal a direct count."""
    rng = random.Random(16)
    instances = [f"5d0c0000-0000-4000-8000-{i:012d}" for i in range(8)]
    sequence: Counter[str] = Counter()
    kinds = {"users.list": "api", "users.get": "api", "sync": "command", "bulk_edit": "ui"}
    for _ in range(90):
        if rng.random() < 0.08:
            collector.forget(rng.choice(instances))
            continue
        if rng.random() < 0.05:
            collector.storage.fold(before=int(collector.clock()) - 86_400)
        iid = rng.choice(instances)
        sequence[iid] += 1
        ahead = datetime.fromtimestamp(collector.clock(), UTC).date() + timedelta(days=10)
        counts = {
            (kinds[n], n, str(ahead - timedelta(days=rng.choice([0, 3, 11, 20, 40, 100, 400])))): (
                rng.randint(1, 9)
            )
            for n in rng.sample(sorted(kinds), rng.randint(1, 3))
        }
        b = body(counts, instance_id=iid, sequence=sequence[iid], dropped={"over_capacity": 1})
        assert collector.post(b).status_code == 200
        collector.clock.advance(rng.choice([0, 3600, 86_400, 9 * 86_400]))
    storage = collector.storage
    kept = storage.read(rollups)

    def rebuilt(conn: sa.Connection) -> None:
        rebuild_rollups(conn)
        raise Rollback(rollups(conn))

    with pytest.raises(Rollback) as again:
        storage.write(rebuilt)
    assert normalized(kept) == normalized(again.value.args[0])
    for days in (1, 2, 7, 16, 30, 31, 45, 90, 366):
        check_window(storage, int(collector.clock()), days)


def check_window(storage: Storage, now: int, days: int) -> None:
    first, last = window(now, days)
    start, end = first.isoformat(), last.isoformat()
    got = storage.read(lambda c: per_name(c, first, last))
    assert {k: v for k, v in got.items() if any(v)} == storage.read(
        lambda c: direct(c, start, end)
    ), days
    since, h, a = now - days * DAY, instance_heartbeats, aggregated_metrics
    received = storage.read(
        lambda c: c.execute(
            sa.select(sa.func.count()).select_from(h).where(h.c.received_at > since)
        ).scalar_one()
    )
    assert storage.read(lambda c: received_since(c, since)) == received
    doc = storage.read(lambda c: collect(c, now=now, days=days, min_instances=1))
    assert doc["heartbeats"]["received"] == received
    q = (
        sa.select(a.c.day, a.c.kind, sa.func.sum(a.c["count"]))
        .where((a.c.day >= start) & (a.c.day <= end) & (a.c.kind != "dropped"))
        .group_by(a.c.day, a.c.kind)
    )
    daily = storage.read(lambda c: {(d, k): int(v) for d, k, v in c.execute(q)})
    kinds = ("api", "command", "ui")
    assert {(d["day"], k): d[k] for d in doc["daily"] for k in kinds if d[k]} == daily
