"""What one write transaction does: record heartbeats, keep instances, forget one.

Functions of an open connection (the caller, :class:`collector.storage.Storage`,
owns the transaction, the retries and the error translation):

* :func:`ingest`: per heartbeat, insert into ``instance_heartbeats`` (``ON
  CONFLICT DO NOTHING … RETURNING``, unique ``heartbeat_id``, the body kept) and,
  only for the rows that insert added, add the counts into ``aggregated_metrics``
  and update ``instances`` and ``sequence_gaps``. A known id answers
  ``duplicate`` (same body hash) or ``conflict`` (different hash) and changes nothing.
* :func:`forget`: delete one instance and subtract exactly its counts, re-read
  from the bodies it sent.

Rows are touched in sorted key order (heartbeat ids, instance ids, metric keys)
so that concurrent PostgreSQL transactions cannot deadlock; :class:`RaceLost`
asks the caller to run the transaction again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from collector.bulk import Statements
from collector.schema import aggregated_metrics, instance_heartbeats, instances, sequence_gaps
from collector.validate import NO_LIMITS, Heartbeat, parse
from outbox.contract import day_of

Status = Literal["accepted", "duplicate", "conflict"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one heartbeat; ``payload_sha256`` is the stored body's hash."""

    status: Status
    payload_sha256: str


@dataclass(frozen=True)
class Forgotten:
    """What :meth:`Storage.forget` removed."""

    instance_id: str
    heartbeats: int
    metric_rows: int
    counts: int


@dataclass(frozen=True)
class InstanceInfo:
    """One instance as the collector knows it (for its operator, never public)."""

    instance_id: str
    first_seen: int
    last_seen: int
    edition: str
    version: str
    last_sequence: int
    heartbeats: int
    missing: int
    repeats: int
    gaps: list[tuple[int, int]]
    totals: dict[str, int]


class RaceLost(Exception):
    """The transaction lost a race with another one; running it again wins."""


def ingest(
    conn: sa.Connection, sql: Statements, batch: Sequence[Heartbeat], now: int
) -> list[Outcome]:
    """Record ``batch`` in ``conn``'s transaction (see :meth:`Storage.ingest
    <collector.storage.Storage.ingest>`)."""
    first: dict[str, int] = {}
    for i, hb in enumerate(batch):
        first.setdefault(hb.heartbeat_id, i)
    primaries = sorted(first.items())  # a fixed lock order on PostgreSQL
    ins = (
        sql.insert(instance_heartbeats)
        .on_conflict_do_nothing(index_elements=["heartbeat_id"])
        .returning(instance_heartbeats.c.heartbeat_id)
    )
    params = [heartbeat_row(batch[i], now) for _, i in primaries]
    inserted = set(conn.execute(ins, params).scalars())
    known = [hid for hid, _ in primaries if hid not in inserted]
    known_sha: dict[str, str] = {}
    if known:
        t = instance_heartbeats
        q = sa.select(t.c.heartbeat_id, t.c.payload_sha256).where(t.c.heartbeat_id.in_(known))
        known_sha = {hid: sha for hid, sha in conn.execute(q)}
    outcomes: list[Outcome] = []
    for i, hb in enumerate(batch):
        hid = hb.heartbeat_id
        if hid in inserted:
            reference = batch[first[hid]].payload_sha256
            if i == first[hid]:
                outcomes.append(Outcome("accepted", reference))
                continue
        elif hid in known_sha:
            reference = known_sha[hid]
        else:  # a concurrent transaction inserted and rolled back: run again
            raise RaceLost
        status: Status = "duplicate" if hb.payload_sha256 == reference else "conflict"
        outcomes.append(Outcome(status, reference))
    new = [batch[i] for hid, i in primaries if hid in inserted]
    if new:
        update_instances(conn, sql, new, now)
        totals = sum_rows(new)
        if totals:
            rows = [(*key, c) for key, c in sorted(totals.items())]
            sql.upsert_add(conn, aggregated_metrics, rows, keys=3)
    return outcomes


def update_instances(
    conn: sa.Connection, sql: Statements, new: Sequence[Heartbeat], now: int
) -> None:
    """Create or update the ``instances`` rows of ``new`` heartbeats, gaps included."""
    by_instance: dict[str, list[Heartbeat]] = defaultdict(list)
    for hb in new:
        by_instance[hb.instance_id].append(hb)
    ids = sorted(by_instance)
    t = instances
    q = sa.select(t).where(t.c.instance_id.in_(ids)).order_by(t.c.instance_id)
    current = {row.instance_id: row._asdict() for row in conn.execute(sql.locking(q))}
    created = [
        {
            "instance_id": iid,
            "first_seen": now,
            "last_seen": now,
            "edition": by_instance[iid][0].edition,
            "version": by_instance[iid][0].version,
            **dict.fromkeys(("last_sequence", "heartbeats", "missing", "repeats"), 0),
        }
        for iid in ids
        if iid not in current
    ]
    if created and sql.dialect == "postgresql":
        # Another transaction may be creating the same instance right now: this
        # insert waits for it, then inserts nothing, and we run again to lock the row.
        ins = postgresql.insert(t).on_conflict_do_nothing().returning(t.c.instance_id)
        if len(conn.execute(ins, created).all()) != len(created):
            raise RaceLost
    elif created:
        sql.executemany(conn, "instances.insert", lambda: sa.insert(t), created)
    current.update((state["instance_id"], state) for state in created)
    for iid in ids:
        state = current[iid]
        for hb in sorted(by_instance[iid], key=lambda h: h.sequence):
            place_sequence(conn, state, hb.sequence)
            if hb.sequence >= state["last_sequence"]:
                state["edition"], state["version"] = hb.edition, hb.version
            state["last_sequence"] = max(state["last_sequence"], hb.sequence)
            state["heartbeats"] += 1
        state["last_seen"] = now
    sql.executemany(
        conn,
        "instances.update",
        lambda: (
            sa.update(t)
            .where(t.c.instance_id == sa.bindparam("b_instance_id"))
            .values({c: sa.bindparam(f"b_{c}") for c in t.c.keys() if c != "instance_id"})
        ),
        [{f"b_{k}": v for k, v in current[iid].items()} for iid in ids],
    )


def place_sequence(conn: sa.Connection, state: dict[str, Any], seq: int) -> None:
    """Account for sequence number ``seq`` in ``state`` and ``sequence_gaps``."""
    iid, last = state["instance_id"], state["last_sequence"]
    g = sequence_gaps
    if seq > last + 1:
        conn.execute(
            sa.insert(g),
            {"instance_id": iid, "first_missing": last + 1, "last_missing": seq - 1},
        )
        state["missing"] += seq - 1 - last
        return
    if seq == last + 1:
        return
    found = conn.execute(
        sa.select(g.c.first_missing, g.c.last_missing).where(
            g.c.instance_id == iid, g.c.first_missing <= seq, g.c.last_missing >= seq
        )
    ).first()
    if found is None:  # that sequence number arrived before, with another heartbeat id
        state["repeats"] += 1
        return
    lo, hi = found
    state["missing"] -= 1
    key = (g.c.instance_id == iid) & (g.c.first_missing == lo)
    if lo == hi:
        conn.execute(sa.delete(g).where(key))
    elif seq == lo:
        conn.execute(sa.update(g).where(key).values(first_missing=seq + 1))
    elif seq == hi:
        conn.execute(sa.update(g).where(key).values(last_missing=seq - 1))
    else:
        conn.execute(sa.update(g).where(key).values(last_missing=seq - 1))
        conn.execute(
            sa.insert(g), {"instance_id": iid, "first_missing": seq + 1, "last_missing": hi}
        )


def forget(conn: sa.Connection, sql: Statements, instance_id: str) -> Forgotten | None:
    """Delete ``instance_id`` and subtract what its stored bodies added."""
    q = sa.select(instances.c.instance_id).where(instances.c.instance_id == instance_id)
    if conn.execute(sql.locking(q)).first() is None:
        return None
    sent = list(stored(conn, instance_id))
    totals = sum_rows(sent)
    a = aggregated_metrics
    key = (
        (a.c.day == sa.bindparam("b_day"))
        & (a.c.kind == sa.bindparam("b_kind"))
        & (a.c.name == sa.bindparam("b_name"))
    )
    params = [
        {"b_day": d, "b_kind": k, "b_name": n, "b_count": c}
        for (d, k, n), c in sorted(totals.items())
    ]
    if params:
        conn.execute(
            sa.update(a).where(key).values(count=a.c["count"] - sa.bindparam("b_count")),
            params,
        )
        conn.execute(sa.delete(a).where(key & (a.c["count"] == 0)), params)
    h = instance_heartbeats
    conn.execute(sa.delete(h).where(h.c.instance_id == instance_id))
    conn.execute(sa.delete(sequence_gaps).where(sequence_gaps.c.instance_id == instance_id))
    conn.execute(sa.delete(instances).where(instances.c.instance_id == instance_id))
    return Forgotten(
        instance_id=instance_id,
        heartbeats=len(sent),
        metric_rows=len(totals),
        counts=sum(c for (_, kind, _), c in totals.items() if kind != "dropped"),
    )


def instance_info(conn: sa.Connection, instance_id: str, *, max_gaps: int) -> InstanceInfo | None:
    """What is stored about one instance, or ``None``."""
    row = conn.execute(sa.select(instances).where(instances.c.instance_id == instance_id)).first()
    if row is None:
        return None
    g = sequence_gaps
    gaps = conn.execute(
        sa.select(g.c.first_missing, g.c.last_missing)
        .where(g.c.instance_id == instance_id)
        .order_by(g.c.first_missing)
        .limit(max_gaps)
    ).all()
    totals: dict[str, int] = defaultdict(int)
    for (_, kind, _), n in sum_rows(stored(conn, instance_id)).items():
        totals[kind] += n
    return InstanceInfo(
        **row._asdict(),
        gaps=[(int(lo), int(hi)) for lo, hi in gaps],
        totals=dict(sorted(totals.items())),
    )


def stored(conn: sa.Connection, instance_id: str) -> Iterator[Heartbeat]:
    """Every heartbeat stored for ``instance_id``, re-read from its body."""
    h = instance_heartbeats
    q = sa.select(h.c.body).where(h.c.instance_id == instance_id).order_by(h.c.sequence)
    for (body,) in conn.execute(q):
        yield parse(bytes(body), limits=NO_LIMITS)


def sum_rows(heartbeats: Iterable[Heartbeat]) -> dict[tuple[str, str, str], int]:
    """The counts of ``heartbeats`` per (day, kind, name); drops under kind ``dropped``
    on the UTC day of ``period_end``."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for hb in heartbeats:
        for day, kind, name, count in hb.rows:
            totals[(day, kind, name)] += count
        drop_day = day_of(hb.period_end).isoformat()
        for reason, n in hb.dropped.items():
            if n:
                totals[(drop_day, "dropped", reason)] += n
    return totals


def heartbeat_row(hb: Heartbeat, now: int) -> dict[str, Any]:
    return {
        "heartbeat_id": hb.heartbeat_id,
        "instance_id": hb.instance_id,
        "sequence": hb.sequence,
        "payload_sha256": hb.payload_sha256,
        "received_at": now,
        "period_start": hb.period_start,
        "period_end": hb.period_end,
        "edition": hb.edition,
        "version": hb.version,
        "size": hb.size,
        "body": hb.body,
    }
