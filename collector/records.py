"""What one write transaction does: record heartbeats, keep instances, forget one.

Functions of an open connection (the caller, :class:`collector.storage.Storage`,
owns the transaction, the retries and the error translation):

* :func:`ingest`: lock the instances of the batch and check each heartbeat's
  credential (the hash of its secret) against the one bound to its instance; per
  heartbeat allowed, insert into ``instance_heartbeats`` (``ON CONFLICT DO NOTHING …
  RETURNING``, unique ``heartbeat_id``, the body kept) and, only for the rows that
  insert added, add the counts into ``aggregated_metrics`` and ``name_instances`` and
  update ``instances`` (binding the credential of an instance's first accepted
  heartbeat: trust on first use) and ``sequence_gaps``. A known id answers
  ``duplicate`` (same body hash) or ``conflict`` (different hash) and changes nothing;
  a wrong or missing credential answers ``unauthorized`` and changes nothing.
* :func:`forget`: delete one instance and subtract exactly its counts, re-read
  from the bodies it sent.

Rows are touched in sorted key order (instance ids, heartbeat ids, metric keys)
so that concurrent PostgreSQL transactions cannot deadlock; :class:`RaceLost`
asks the caller to run the transaction again.
"""

from __future__ import annotations

import hmac
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from collector.bulk import INT64_MAX, Statements
from collector.errors import Unauthorized
from collector.schema import (
    HALF,
    aggregated_metrics,
    day_of_seconds,
    day_totals,
    instance_days,
    instance_heartbeats,
    instances,
    metric_months,
    name_instances,
    receipt_days,
    sequence_gaps,
)
from collector.validate import NO_LIMITS, Heartbeat, parse
from outbox.contract import day_of

Status = Literal["accepted", "duplicate", "conflict", "unauthorized"]

#: Why a read or forget without the instance's secret is refused (the HTTP layer adds
#: nothing: these say what to do).
WRONG_SECRET = (
    "this instance is registered with another secret: only the outbox that sent its "
    "heartbeats (its instance secret, sent as Authorization: Bearer) can read or forget it"
)
NO_SECRET_YET = (
    "this instance was stored before instance secrets existed and has none yet: its next "
    "heartbeat binds one; until then its data can be read or forgotten only by the "
    "collector's operator (outbox-collector instances / forget)"
)
#: Names per ``IN (...)`` list when reading rollup rows back (SQLite allows 32,766 bound
#: values; this keeps each statement small).
_IN_CHUNK: Final = 500


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
    #: Whether an instance secret is bound (for the operator; never the hash itself).
    credential: bool = True


class RaceLost(Exception):
    """The transaction lost a race with another one; running it again wins."""


def matches(bound: str, credential: str) -> bool:
    """True when ``credential`` (a secret's hash) is the bound one: constant time."""
    return bool(credential) and hmac.compare_digest(bound.encode(), credential.encode())


def lock_instances(
    conn: sa.Connection, sql: Statements, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The ``instances`` rows of ``ids`` (sorted), locked for this transaction."""
    t = instances
    q = sa.select(t).where(t.c.instance_id.in_(ids)).order_by(t.c.instance_id)
    return {row.instance_id: row._asdict() for row in conn.execute(sql.locking(q))}


def ingest(
    conn: sa.Connection, sql: Statements, batch: Sequence[Heartbeat], now: int
) -> list[Outcome]:
    """Record ``batch`` in ``conn``'s transaction (see :meth:`Storage.ingest
    <collector.storage.Storage.ingest>`)."""
    current = lock_instances(conn, sql, sorted({hb.instance_id for hb in batch}))

    def allowed(hb: Heartbeat) -> bool:
        bound = current.get(hb.instance_id, {}).get("secret_hash")
        # Unbound (new, or stored before credentials): any secret, for now; the first
        # accepted heartbeat binds its own below.
        return matches(bound, hb.credential) if bound else bool(hb.credential)

    ok = [allowed(hb) for hb in batch]
    first: dict[str, int] = {}
    for i, hb in enumerate(batch):
        if ok[i]:
            first.setdefault(hb.heartbeat_id, i)
    primaries = sorted(first.items())  # a fixed lock order on PostgreSQL
    inserted: set[str] = set()
    if primaries:
        ins = (
            sql.insert(instance_heartbeats)
            .on_conflict_do_nothing(index_elements=["heartbeat_id"])
            .returning(instance_heartbeats.c.heartbeat_id)
        )
        params = [heartbeat_row(batch[i], now) for _, i in primaries]
        inserted = set(conn.execute(ins, params).scalars())
    binding = bind_first(batch, first, inserted, current)
    revoked: set[str] = set()
    for i, hb in enumerate(batch):
        want = binding.get(hb.instance_id)
        if ok[i] and want is not None and not matches(want, hb.credential):
            ok[i] = False  # another secret was bound by an earlier heartbeat of this batch
            if first[hb.heartbeat_id] == i and hb.heartbeat_id in inserted:
                revoked.add(hb.heartbeat_id)
    if revoked:
        h = instance_heartbeats
        conn.execute(sa.delete(h).where(h.c.heartbeat_id.in_(sorted(revoked))))
        inserted -= revoked
    known = [hid for hid, i in primaries if hid not in inserted and hid not in revoked]
    known_sha: dict[str, str] = {}
    if known:
        t = instance_heartbeats
        q = sa.select(t.c.heartbeat_id, t.c.payload_sha256).where(t.c.heartbeat_id.in_(known))
        known_sha = {hid: sha for hid, sha in conn.execute(q)}
    outcomes: list[Outcome] = []
    for i, hb in enumerate(batch):
        hid = hb.heartbeat_id
        if not ok[i] or hid in revoked:
            outcomes.append(Outcome("unauthorized", ""))
            continue
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
        update_instances(conn, sql, new, now, current, binding)
        moves = widen_spans(conn, sql, name_spans(new))
        add_counts(conn, sql, sum_rows(new), moves)
        sql.upsert_add(conn, receipt_days, [(day_of_seconds(now), len(new))], keys=1)
    return outcomes


Moves = dict[tuple[str, str, str], list[int]]


def widen_spans(
    conn: sa.Connection, sql: Statements, spans: list[tuple[tuple[str, str, str], list[str]]]
) -> Moves:
    """Store the ``name_instances`` spans of a batch (new rows, or days widened), and
    return how the span starts and ends move: (day, kind, name) → [starts, ends] to add
    (an end that moves from one day to a later one is -1 and +1)."""
    moves: Moves = defaultdict(lambda: [0, 0])
    if not spans:
        return moves
    stored = sql.spans(conn, [key for key, _ in spans])
    inserts: list[tuple[str, str, str, str, str]] = []
    updates: list[tuple[str, str, str, str, str]] = []
    for key, (first, last) in spans:
        _, kind, name = key
        old = stored.get(key)
        if old is None:
            inserts.append((*key, first, last))
            moves[(first, kind, name)][0] += 1
            moves[(last, kind, name)][1] += 1
            continue
        was_first, was_last = old
        first, last = min(first, was_first), max(last, was_last)
        if first == was_first and last == was_last:
            continue
        updates.append((*key, first, last))
        if first != was_first:
            moves[(was_first, kind, name)][0] -= 1
            moves[(first, kind, name)][0] += 1
        if last != was_last:
            moves[(was_last, kind, name)][1] -= 1
            moves[(last, kind, name)][1] += 1
    sql.write_spans(conn, inserts, updates)
    return moves


def add_counts(
    conn: sa.Connection, sql: Statements, totals: dict[tuple[str, str, str], int], moves: Moves
) -> None:
    """Add a batch's counts and span moves to ``aggregated_metrics`` and its rollups
    (``metric_months``, ``day_totals``); rows whose change is all zeros are not written."""
    keys = sorted(totals.keys() | moves.keys())
    rows = []
    months: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    days: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for key in keys:
        count = totals.get(key, 0)
        starts, ends = moves.get(key, (0, 0))
        if not (count or starts or ends):
            continue
        day, kind, name = key
        rows.append((day, kind, name, count, starts, ends))
        month = months[(day[:7], kind, name)]
        month[0] += count >> 32
        month[1] += count & HALF
        month[2] += starts
        month[3] += ends
        if count:
            total = days[(day, kind)]
            total[0] += count >> 32
            total[1] += count & HALF
    if rows:
        sql.upsert_add(conn, aggregated_metrics, rows, keys=3)
    month_rows = [(*k, *v) for k, v in sorted(months.items()) if any(v)]
    if month_rows:
        sql.upsert_add(conn, metric_months, month_rows, keys=3)
    if days:
        sql.upsert_add(conn, day_totals, [(*k, *v) for k, v in sorted(days.items())], keys=2)


def bind_first(
    batch: Sequence[Heartbeat],
    first: dict[str, int],
    inserted: set[str],
    current: dict[str, dict[str, Any]],
) -> dict[str, str]:
    """Instance id → the credential its first accepted heartbeat of ``batch`` brings, for
    the instances that have none bound yet (trust on first use)."""
    binding: dict[str, str] = {}
    for hid, i in sorted(first.items(), key=lambda item: item[1]):
        hb = batch[i]
        if hid in inserted and not current.get(hb.instance_id, {}).get("secret_hash"):
            binding.setdefault(hb.instance_id, hb.credential)
    return binding


def name_spans(heartbeats: Sequence[Heartbeat]) -> list[tuple[tuple[str, str, str], list[str]]]:
    """(instance id, kind, name) → [first day, last day] reported, sorted by key (the
    table's primary key, so PostgreSQL locks in one order); from each heartbeat's
    ``spans``, merged when one instance sent several."""
    ids = [hb.instance_id for hb in heartbeats]
    if len(set(ids)) == len(ids):  # one heartbeat per instance: nothing to merge
        ordered = sorted(heartbeats, key=lambda hb: hb.instance_id)  # spans are sorted
        return [((hb.instance_id, k, n), [f, la]) for hb in ordered for k, n, f, la in hb.spans]
    spans: dict[tuple[str, str, str], list[str]] = {}
    for hb in heartbeats:
        for kind, name, first, last in hb.spans:
            key = (hb.instance_id, kind, name)
            span = spans.get(key)
            if span is None:
                spans[key] = [first, last]
            else:
                span[0], span[1] = min(span[0], first), max(span[1], last)
    return sorted(spans.items())


def update_instances(
    conn: sa.Connection,
    sql: Statements,
    new: Sequence[Heartbeat],
    now: int,
    current: dict[str, dict[str, Any]],
    binding: dict[str, str],
) -> None:
    """Create or update the ``instances`` rows of ``new`` heartbeats, gaps and
    credentials included (``current``: the rows :func:`lock_instances` read)."""
    by_instance: dict[str, list[Heartbeat]] = defaultdict(list)
    for hb in new:
        by_instance[hb.instance_id].append(hb)
    ids = sorted(by_instance)
    t = instances
    created = [
        {
            "instance_id": iid,
            "first_seen": now,
            "last_seen": now,
            "edition": by_instance[iid][0].edition,
            "version": by_instance[iid][0].version,
            **dict.fromkeys(("last_sequence", "heartbeats", "missing", "repeats"), 0),
            "secret_hash": binding[iid],
        }
        for iid in ids
        if iid not in current
    ]
    if created and sql.dialect == "postgresql":
        # Another transaction may be creating the same instance right now: this
        # insert waits for it, then inserts nothing, and we run again to lock the row
        # (and to check our credential against the one it bound).
        ins = postgresql.insert(t).on_conflict_do_nothing().returning(t.c.instance_id)
        if len(conn.execute(ins, created).all()) != len(created):
            raise RaceLost
    elif created:
        sql.executemany(conn, "instances.insert", lambda: sa.insert(t), created)
    state_of = dict(current)
    state_of.update((str(state["instance_id"]), state) for state in created)
    for iid in ids:
        state = state_of[iid]
        if not state["secret_hash"]:
            state["secret_hash"] = binding[iid]
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
        [{f"b_{k}": v for k, v in state_of[iid].items()} for iid in ids],
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


def check_credential(state: Any, credential: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``credential`` is the one bound to the instance
    ``state`` (``None``: the operator, who needs none)."""
    if credential is None:
        return
    bound = state.secret_hash
    if not bound:
        raise Unauthorized(NO_SECRET_YET)
    if not matches(bound, credential):
        raise Unauthorized(WRONG_SECRET)


def forget(
    conn: sa.Connection, sql: Statements, instance_id: str, credential: str | None
) -> Forgotten | None:
    """Delete ``instance_id`` and subtract what its stored bodies added.

    Works whatever the bodies hold: a count that outgrew 64 bits (stored before the
    bounds existed) is subtracted as far as the row goes, never bound as a parameter.
    """
    q = sa.select(instances).where(instances.c.instance_id == instance_id)
    state = conn.execute(sql.locking(q)).first()
    if state is None:
        return None
    check_credential(state, credential)
    totals = counted(conn, instance_id)
    h = instance_heartbeats
    sent = conn.execute(
        sa.select(sa.func.count()).select_from(h).where(h.c.instance_id == instance_id)
    ).scalar_one()
    n = name_instances
    moves: Moves = defaultdict(lambda: [0, 0])
    for kind, name, first, last in conn.execute(
        sa.select(n.c.kind, n.c.name, n.c.first_day, n.c.last_day).where(
            n.c.instance_id == instance_id
        )
    ):
        moves[(first, kind, name)][0] -= 1
        moves[(last, kind, name)][1] -= 1
    a = aggregated_metrics
    key = (
        (a.c.day == sa.bindparam("b_day"))
        & (a.c.kind == sa.bindparam("b_kind"))
        & (a.c.name == sa.bindparam("b_name"))
    )
    params = [
        {
            "b_day": d,
            "b_kind": k,
            "b_name": m,
            "b_count": min(totals.get((d, k, m), 0), INT64_MAX),
            "b_starts": moves.get((d, k, m), (0, 0))[0],
            "b_ends": moves.get((d, k, m), (0, 0))[1],
        }
        for d, k, m in sorted(totals.keys() | moves.keys())
    ]
    if params:
        count, minus = a.c["count"], sa.bindparam("b_count", type_=sa.BigInteger)
        conn.execute(
            sa.update(a)
            .where(key)
            .values(
                count=sa.case((count > minus, count - minus), else_=0),
                starts=a.c.starts + sa.bindparam("b_starts", type_=sa.BigInteger),
                ends=a.c.ends + sa.bindparam("b_ends", type_=sa.BigInteger),
            ),
            params,
        )
        conn.execute(sa.delete(a).where(key & (count <= 0)), params)
    subtract_rollups(conn, instance_id, totals, moves)
    h = instance_heartbeats
    conn.execute(sa.delete(h).where(h.c.instance_id == instance_id))
    conn.execute(sa.delete(name_instances).where(name_instances.c.instance_id == instance_id))
    conn.execute(sa.delete(instance_days).where(instance_days.c.instance_id == instance_id))
    conn.execute(sa.delete(sequence_gaps).where(sequence_gaps.c.instance_id == instance_id))
    conn.execute(sa.delete(instances).where(instances.c.instance_id == instance_id))
    return Forgotten(
        instance_id=instance_id,
        heartbeats=int(sent),
        metric_rows=len(totals),
        counts=sum(c for (_, kind, _), c in totals.items() if kind != "dropped"),
    )


def subtract_rollups(
    conn: sa.Connection,
    instance_id: str,
    totals: dict[tuple[str, str, str], int],
    moves: Moves,
) -> None:
    """Take a forgotten instance's counts, span moves and heartbeats out of
    ``metric_months``, ``day_totals`` and ``receipt_days``: each row read, changed
    exactly in Python (clamped at zero, as the day rows are), written back."""
    months: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    days: dict[tuple[str, str], int] = defaultdict(int)
    for (day, kind, name), c in totals.items():
        months[(day[:7], kind, name)][0] += c
        days[(day, kind)] += c
    for (day, kind, name), (starts, ends) in moves.items():
        month = months[(day[:7], kind, name)]
        month[1] += starts
        month[2] += ends
    m = metric_months
    names_of: dict[str, set[str]] = defaultdict(set)
    for mo, _, name in months:
        names_of[mo].add(name)
    changed = []
    for mo, names in sorted(names_of.items()):
        # Only the rows of the forgotten instance's names: a month holds every instance's.
        wanted = sorted(names)
        for kind, name, high, low, starts, ends in (
            row
            for i in range(0, len(wanted), _IN_CHUNK)
            for row in conn.execute(
                sa.select(m.c.kind, m.c.name, m.c.count_high, m.c.count_low, m.c.starts, m.c.ends)
                .where((m.c.month == mo) & m.c.name.in_(wanted[i : i + _IN_CHUNK]))
                .order_by(m.c.kind, m.c.name)
            )
        ):
            change = months.get((mo, kind, name))
            if change is not None:
                left = max((int(high) << 32) + int(low) - change[0], 0)
                changed.append(
                    {
                        "b_month": mo,
                        "b_kind": kind,
                        "b_name": name,
                        "b_high": left >> 32,
                        "b_low": left & HALF,
                        "b_starts": int(starts) + change[1],
                        "b_ends": int(ends) + change[2],
                    }
                )
    if changed:
        conn.execute(
            sa.update(m)
            .where(
                (m.c.month == sa.bindparam("b_month"))
                & (m.c.kind == sa.bindparam("b_kind"))
                & (m.c.name == sa.bindparam("b_name"))
            )
            .values(
                count_high=sa.bindparam("b_high"),
                count_low=sa.bindparam("b_low"),
                starts=sa.bindparam("b_starts"),
                ends=sa.bindparam("b_ends"),
            ),
            changed,
        )
    t = day_totals
    day_rows = []
    if days:
        q = sa.select(t.c.day, t.c.kind, t.c.count_high, t.c.count_low).where(
            t.c.day.in_(sorted({d for d, _ in days}))
        )
        for day, kind, high, low in conn.execute(q.order_by(t.c.day, t.c.kind)):
            gone = days.get((day, kind))
            if gone is not None:
                left = max((int(high) << 32) + int(low) - gone, 0)
                day_rows.append(
                    {"b_day": day, "b_kind": kind, "b_high": left >> 32, "b_low": left & HALF}
                )
    if day_rows:
        conn.execute(
            sa.update(t)
            .where((t.c.day == sa.bindparam("b_day")) & (t.c.kind == sa.bindparam("b_kind")))
            .values(count_high=sa.bindparam("b_high"), count_low=sa.bindparam("b_low")),
            day_rows,
        )
    h, r = instance_heartbeats, receipt_days
    received: dict[str, int] = defaultdict(int)
    for (at,) in conn.execute(sa.select(h.c.received_at).where(h.c.instance_id == instance_id)):
        received[day_of_seconds(int(at))] += 1
    if received:
        conn.execute(
            sa.update(r)
            .where(r.c.day == sa.bindparam("b_day"))
            .values(heartbeats=r.c.heartbeats - sa.bindparam("b_n", type_=sa.BigInteger)),
            [{"b_day": d, "b_n": c} for d, c in sorted(received.items())],
        )


def instance_info(
    conn: sa.Connection, instance_id: str, *, max_gaps: int, credential: str | None
) -> InstanceInfo | None:
    """What is stored about one instance, or ``None``; :class:`Unauthorized` unless
    ``credential`` is its secret's hash (``None``: the operator)."""
    row = conn.execute(sa.select(instances).where(instances.c.instance_id == instance_id)).first()
    if row is None:
        return None
    check_credential(row, credential)
    g = sequence_gaps
    gaps = conn.execute(
        sa.select(g.c.first_missing, g.c.last_missing)
        .where(g.c.instance_id == instance_id)
        .order_by(g.c.first_missing)
        .limit(max_gaps)
    ).all()
    totals: dict[str, int] = defaultdict(int)
    for (_, kind, _), n in counted(conn, instance_id).items():
        totals[kind] += n
    fields = row._asdict()
    bound = fields.pop("secret_hash")
    return InstanceInfo(
        **fields,
        gaps=[(int(lo), int(hi)) for lo, hi in gaps],
        totals=dict(sorted(totals.items())),
        credential=bool(bound),
    )


def instance_list(conn: sa.Connection) -> list[InstanceInfo]:
    """Every instance, most recently seen first (for the operator: no gaps, no totals)."""
    t = instances
    rows = conn.execute(sa.select(t).order_by(t.c.last_seen.desc(), t.c.instance_id))
    out = []
    for row in rows:
        fields = row._asdict()
        bound = fields.pop("secret_hash")
        out.append(InstanceInfo(**fields, gaps=[], totals={}, credential=bool(bound)))
    return out


def instance_names(conn: sa.Connection, instance_id: str) -> list[tuple[str, str, str, str]]:
    """(kind, name, first day, last day) of every name ``instance_id`` reported."""
    n = name_instances
    q = (
        sa.select(n.c.kind, n.c.name, n.c.first_day, n.c.last_day)
        .where(n.c.instance_id == instance_id)
        .order_by(n.c.kind, n.c.name)
    )
    return [(str(k), str(m), str(f), str(la)) for k, m, f, la in conn.execute(q)]


def stored(conn: sa.Connection, instance_id: str) -> Iterator[Heartbeat]:
    """Every heartbeat of ``instance_id`` whose body is kept (not folded), re-read from it."""
    h = instance_heartbeats
    q = sa.select(h.c.body).where(h.c.instance_id == instance_id).order_by(h.c.sequence)
    for (body,) in conn.execute(q):
        if body:
            yield parse(bytes(body), limits=NO_LIMITS)


def counted(conn: sa.Connection, instance_id: str) -> dict[tuple[str, str, str], int]:
    """What ``instance_id``'s heartbeats added, per (day, kind, name): its kept bodies plus
    its folded days (``instance_days``)."""
    totals = sum_rows(stored(conn, instance_id))
    d = instance_days
    for day, counts in conn.execute(
        sa.select(d.c.day, d.c.counts).where(d.c.instance_id == instance_id)
    ):
        for key, n in day_counts(counts).items():
            kind, name = key.split(" ", 1)
            totals[(day, kind, name)] += int(n)
    return totals


@dataclass(frozen=True)
class Folded:
    """What :func:`fold` did."""

    heartbeats: int
    instances: int
    day_rows: int


def fold(
    conn: sa.Connection, sql: Statements, before: int, limit: int
) -> tuple[int, set[tuple[str, str]]]:
    """Fold the bodies of up to ``limit`` heartbeats received before ``before`` (unix
    seconds) into ``instance_days``, and empty them; returns how many, and the (instance
    id, day) rows written.

    Exact by construction: a folded day row holds the very sums the bodies held, so
    :func:`counted` (what forget subtracts, what an instance's totals show) is the same
    before and after. The instances are locked first, in order, as ingest and forget do.
    """
    h, d = instance_heartbeats, instance_days
    rows = conn.execute(
        sa.select(h.c.heartbeat_id, h.c.instance_id, h.c.body)
        .where((h.c.received_at < before) & (sa.func.length(h.c.body) > 0))
        .order_by(h.c.instance_id, h.c.sequence)
        .limit(limit)
    ).all()
    if not rows:
        return 0, set()
    ids = sorted({iid for _, iid, _ in rows})
    lock_instances(conn, sql, ids)
    per_day: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, iid, body in rows:
        for (day, kind, name), n in sum_rows([parse(bytes(body), limits=NO_LIMITS)]).items():
            per_day[(iid, day)][f"{kind} {name}"] += n
    existing = {
        (iid, day): day_counts(counts)
        for iid, day, counts in conn.execute(
            sa.select(d.c.instance_id, d.c.day, d.c.counts).where(d.c.instance_id.in_(ids))
        )
    }
    inserts, updates = [], []
    for key, counts in sorted(per_day.items()):
        merged = existing.get(key)
        if merged is None:
            inserts.append({"instance_id": key[0], "day": key[1], "counts": _dump(counts)})
            continue
        for name, n in counts.items():
            merged[name] = merged.get(name, 0) + n
        updates.append({"b_id": key[0], "b_day": key[1], "b_counts": _dump(merged)})
    if inserts:
        conn.execute(sa.insert(d), inserts)
    if updates:
        conn.execute(
            sa.update(d)
            .where((d.c.instance_id == sa.bindparam("b_id")) & (d.c.day == sa.bindparam("b_day")))
            .values(counts=sa.bindparam("b_counts")),
            updates,
        )
    conn.execute(
        sa.update(h).where(h.c.heartbeat_id.in_(sorted(hid for hid, _, _ in rows))).values(body=b"")
    )
    return len(rows), set(per_day)


def _dump(counts: dict[str, int]) -> bytes:
    return zlib.compress(json.dumps(dict(sorted(counts.items())), separators=(",", ":")).encode())


def day_counts(stored: bytes) -> dict[str, int]:
    """An ``instance_days.counts`` value: ``"<kind> <name>"`` → count."""
    found: dict[str, int] = json.loads(zlib.decompress(bytes(stored)))
    return found


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
