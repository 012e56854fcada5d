"""The collector's storage: one class, the same code on SQLite and PostgreSQL.

:class:`Storage` owns the SQLAlchemy engines and does every write in one
transaction:

* :meth:`Storage.ingest` records a batch of validated heartbeats. Per heartbeat:
  insert into ``instance_heartbeats`` (``ON CONFLICT DO NOTHING``, unique
  ``heartbeat_id``, the body kept) and, only when that inserted a row, add its
  counts into ``aggregated_metrics`` and update ``instances`` and
  ``sequence_gaps``. A known id answers ``duplicate`` (same body hash) or
  ``conflict`` (different hash) and changes nothing.
* :meth:`Storage.forget` deletes one instance and subtracts exactly its counts,
  re-read from the bodies it sent.

SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` plus a process-wide lock so
that writers queue instead of failing with "database is locked". PostgreSQL:
psycopg 3, rows locked in a fixed order (sorted keys) and a deadlock or
serialization failure retried. ``sqlalchemy`` errors are translated into
:mod:`collector.errors` here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.compiler import SQLCompiler

from collector import schema
from collector.errors import StorageBusy, StorageError
from collector.schema import (
    aggregated_metrics,
    instance_heartbeats,
    instances,
    sequence_gaps,
)
from collector.validate import NO_LIMITS, Heartbeat, parse

log = logging.getLogger(__name__)

T = TypeVar("T")
Status = Literal["accepted", "duplicate", "conflict"]

#: PostgreSQL SQLSTATEs worth retrying the whole transaction for.
_RETRY_SQLSTATES: Final = frozenset({"40001", "40P01"})
_ATTEMPTS: Final = 5


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


class _Retry(Exception):
    """The transaction lost a race it can win by running again."""


def database_url(target: str | Path) -> sa.URL:
    """``postgresql://…`` (driven by psycopg 3), ``sqlite:///…``, or a plain file path."""
    text = str(target)
    if "://" not in text:
        return sa.URL.create("sqlite+pysqlite", database=str(Path(text).expanduser().resolve()))
    url = sa.make_url(text)
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite+pysqlite")
    raise StorageError(
        f"unsupported database URL scheme {url.drivername!r}: give a file path, "
        "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


def _utc_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


class Storage:
    """The collector's database.

    :param target: a SQLite file path (created with its folder), ``sqlite:///PATH``
        or ``postgresql://USER:PASSWORD@HOST:PORT/DB``.
    :param busy_timeout: seconds a SQLite writer waits for another process's lock
        before giving up with :class:`StorageBusy` (answered as 503).
    :param synchronous: SQLite's ``synchronous`` pragma; ``FULL`` makes an
        accepted heartbeat survive a power cut (commits are batched, so this is cheap).
    :param pool_size: PostgreSQL connections kept open.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        busy_timeout: float = 5.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        pool_size: int = 8,
    ) -> None:
        self.url = database_url(target)
        self._compiled: dict[str, SQLCompiler] = {}
        self.dialect = "sqlite" if self.url.drivername.startswith("sqlite") else "postgresql"
        self._lock: contextlib.AbstractContextManager[Any]
        if self.dialect == "sqlite":
            path = Path(self.url.database or "")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(f"cannot create the folder for {path}: {e}") from e
            self._writer = self._sqlite_engine(busy_timeout, synchronous, "BEGIN IMMEDIATE", 1)
            self._reader = self._sqlite_engine(busy_timeout, synchronous, "BEGIN", 4)
            self._lock = threading.Lock()
            self._insert: Callable[[sa.Table], Any] = sqlite.insert
        else:
            self._writer = sa.create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
            self._reader = self._writer
            self._lock = contextlib.nullcontext()
            self._insert = postgresql.insert

    def _sqlite_engine(
        self, busy_timeout: float, synchronous: str, begin: str, pool_size: int
    ) -> sa.Engine:
        engine = sa.create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=4,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
        )

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @property
    def display_url(self) -> str:
        """Where the data lives, for people: the SQLite file, or the URL without its password."""
        if self.dialect == "sqlite":
            return f"{self.url.database} (SQLite)"
        shown = self.url.set(drivername="postgresql").render_as_string(hide_password=True)
        return f"{shown} (PostgreSQL)"

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    # -- transactions ---------------------------------------------------------------

    def _run(self, engine: sa.Engine, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction, retrying lost races; translate driver errors."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._lock if write else contextlib.nullcontext():
                    with engine.begin() as conn:
                        return fn(conn)
            except _Retry:
                if attempt == _ATTEMPTS:
                    raise StorageBusy("the database stayed contended; try again") from None
            except sa.exc.DBAPIError as e:
                sqlstate = getattr(e.orig, "sqlstate", None)
                if sqlstate in _RETRY_SQLSTATES and attempt < _ATTEMPTS:
                    log.info("retrying a transaction after SQLSTATE %s", sqlstate)
                    continue
                raise self._translate(e) from e
            except sa.exc.SQLAlchemyError as e:
                raise StorageError(f"database error: {type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(self, e: sa.exc.DBAPIError) -> StorageError:
        text = str(e.orig)
        low = text.lower()
        if self.dialect == "sqlite" and ("locked" in low or "busy" in low):
            return StorageBusy(f"the SQLite database is locked by another process: {text}")
        if getattr(e.orig, "sqlstate", None) in _RETRY_SQLSTATES:
            return StorageBusy(f"the database stayed contended: {text}")
        if isinstance(e, sa.exc.OperationalError) and self.dialect == "postgresql":
            return StorageBusy(f"cannot use PostgreSQL at {self.display_url}: {text}")
        return StorageError(f"database error: {text}")

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` in one snapshot."""
        return self._run(self._reader, fn, write=False)

    def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction (serialized on SQLite)."""
        return self._run(self._writer, fn, write=True)

    def migrate(self, *, now: int) -> int:
        """Create or upgrade the schema; returns the version found (0 = new database).

        :raises collector.errors.SchemaTooNew: the database belongs to a newer collector.
        :raises StorageError: the database cannot be reached or written.
        """
        return self.write(lambda conn: schema.migrate(conn, now=now))

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            self.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        except StorageError:
            return False
        return True

    # -- ingest ---------------------------------------------------------------------

    def ingest(self, batch: Sequence[Heartbeat], *, now: int) -> list[Outcome]:
        """Record ``batch`` in one transaction; one :class:`Outcome` per item, in order.

        The same ``heartbeat_id`` twice in one batch behaves as if sent one after
        the other: the first may be accepted, the rest are duplicates or conflicts.
        """
        if not batch:
            return []
        return self.write(lambda conn: self._ingest(conn, batch, now))

    def _ingest(self, conn: sa.Connection, batch: Sequence[Heartbeat], now: int) -> list[Outcome]:
        first: dict[str, int] = {}
        for i, hb in enumerate(batch):
            first.setdefault(hb.heartbeat_id, i)
        primaries = sorted(first.items())  # a fixed lock order on PostgreSQL
        ins = (
            self._insert(instance_heartbeats)
            .on_conflict_do_nothing(index_elements=["heartbeat_id"])
            .returning(instance_heartbeats.c.heartbeat_id)
        )
        params = [_heartbeat_row(batch[i], now) for _, i in primaries]
        inserted = set(conn.execute(ins, params).scalars())
        known = [hid for hid, _ in primaries if hid not in inserted]
        stored: dict[str, str] = {}
        if known:
            t = instance_heartbeats
            q = sa.select(t.c.heartbeat_id, t.c.payload_sha256).where(t.c.heartbeat_id.in_(known))
            stored = {hid: sha for hid, sha in conn.execute(q)}
        outcomes: list[Outcome] = []
        for i, hb in enumerate(batch):
            hid = hb.heartbeat_id
            if hid in inserted:
                reference = batch[first[hid]].payload_sha256
                if i == first[hid]:
                    outcomes.append(Outcome("accepted", reference))
                    continue
            elif hid in stored:
                reference = stored[hid]
            else:  # a concurrent transaction inserted and rolled back: run again
                raise _Retry
            status: Status = "duplicate" if hb.payload_sha256 == reference else "conflict"
            outcomes.append(Outcome(status, reference))
        new = [batch[i] for hid, i in primaries if hid in inserted]
        if new:
            self._update_instances(conn, new, now)
            self._add_metrics(conn, new)
        return outcomes

    def _add_metrics(self, conn: sa.Connection, new: Sequence[Heartbeat]) -> None:
        totals = _sum_rows(new)
        if totals:
            # Sorted: PostgreSQL locks the rows in this order, so batches cannot deadlock.
            self._upsert_add(
                conn, aggregated_metrics, [(*key, c) for key, c in sorted(totals.items())], keys=3
            )

    def _upsert_add(
        self, conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]], *, keys: int
    ) -> None:
        """``INSERT … ON CONFLICT (key columns) DO UPDATE SET count = count + excluded.count``.

        ``rows`` hold the table's values in column order, the first ``keys`` being
        its primary key, each key once. A batch carries tens of rows per heartbeat,
        so this is the hot path, and each dialect gets the form it runs fastest:

        * SQLite (in-process): one compiled statement, the rows handed straight to
          ``sqlite3``'s ``executemany`` (SQLAlchemy's per-row parameter processing
          was most of the CPU time; the values are plain str and int).
        * PostgreSQL (a round trip per statement): a single
          ``INSERT … SELECT * FROM unnest(array, array, …)``, one array per column.
        """
        columns = [c.name for c in table.columns]
        compiled = self._compiled.get(table.name)
        if compiled is None:
            stmt = self._insert(table)
            if self.dialect == "postgresql":
                arrays = [sa.bindparam(f"a_{c.name}", type_=ARRAY(c.type)) for c in table.columns]
                source = sa.func.unnest(*arrays).table_valued(*columns).render_derived()
                stmt = stmt.from_select(columns, sa.select(*(source.c[c] for c in columns)))
            stmt = stmt.on_conflict_do_update(
                index_elements=columns[:keys],
                set_={"count": table.c["count"] + stmt.excluded["count"]},
            )
            compiled = cast(SQLCompiler, stmt.compile(dialect=conn.dialect))
            self._compiled[table.name] = compiled
        if self.dialect == "postgresql":
            by_column = {f"a_{c}": [r[i] for r in rows] for i, c in enumerate(columns)}
            conn.execute(cast(sa.Executable, compiled.statement), by_column)
            return
        order = compiled.positiontup
        if order is None or list(order) != columns:  # pragma: no cover - sqlite3 is qmark
            raise AssertionError(f"unexpected parameter order {order}")
        conn.exec_driver_sql(compiled.string, rows)

    def _update_instances(self, conn: sa.Connection, new: Sequence[Heartbeat], now: int) -> None:
        by_instance: dict[str, list[Heartbeat]] = defaultdict(list)
        for hb in new:
            by_instance[hb.instance_id].append(hb)
        ids = sorted(by_instance)
        t = instances
        q = sa.select(t).where(t.c.instance_id.in_(ids)).order_by(t.c.instance_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        current = {row.instance_id: row._asdict() for row in conn.execute(q)}
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
        if created and self.dialect == "postgresql":
            # Another transaction may be creating the same instance right now: this
            # insert waits for it, then inserts nothing, and we run again to lock the row.
            ins = postgresql.insert(t).on_conflict_do_nothing().returning(t.c.instance_id)
            if len(conn.execute(ins, created).all()) != len(created):
                raise _Retry
        elif created:
            self._executemany(conn, "instances.insert", lambda: sa.insert(t), created)
        current.update((state["instance_id"], state) for state in created)
        for iid in ids:
            state = current[iid]
            for hb in sorted(by_instance[iid], key=lambda h: h.sequence):
                self._place_sequence(conn, state, hb.sequence)
                if hb.sequence >= state["last_sequence"]:
                    state["edition"], state["version"] = hb.edition, hb.version
                state["last_sequence"] = max(state["last_sequence"], hb.sequence)
                state["heartbeats"] += 1
            state["last_seen"] = now
        self._executemany(
            conn,
            "instances.update",
            lambda: (
                sa.update(t)
                .where(t.c.instance_id == sa.bindparam("b_instance_id"))
                .values({c: sa.bindparam(f"b_{c}") for c in t.c.keys() if c != "instance_id"})
            ),
            [{f"b_{k}": v for k, v in current[iid].items()} for iid in ids],
        )

    def _executemany(
        self,
        conn: sa.Connection,
        key: str,
        build: Callable[[], sa.Insert | sa.Update],
        rows: list[dict[str, Any]],
    ) -> None:
        """Run a statement (built and compiled once) for each of ``rows``.

        On SQLite the rows go straight to ``sqlite3``'s ``executemany``, skipping
        SQLAlchemy's per-row parameter processing (the values are plain str and int).
        """
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = build().compile(dialect=conn.dialect)
            self._compiled[key] = compiled
        order = compiled.positiontup
        if self.dialect == "sqlite" and order is not None:
            conn.exec_driver_sql(compiled.string, [tuple(r[k] for k in order) for r in rows])
        else:
            conn.execute(cast(sa.Executable, compiled.statement), rows)

    def _place_sequence(self, conn: sa.Connection, state: dict[str, Any], seq: int) -> None:
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

    # -- forget and per-instance reads ---------------------------------------------------

    def forget(self, instance_id: str) -> Forgotten | None:
        """Delete ``instance_id`` and subtract exactly its counts, in one transaction.

        :returns: what was removed, or ``None`` for an instance never seen.
        """
        return self.write(lambda conn: self._forget(conn, instance_id))

    def _forget(self, conn: sa.Connection, instance_id: str) -> Forgotten | None:
        q = sa.select(instances.c.instance_id).where(instances.c.instance_id == instance_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        if conn.execute(q).first() is None:
            return None
        sent = list(_stored(conn, instance_id))
        totals = _sum_rows(sent)
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

    def instance(self, instance_id: str, *, max_gaps: int = 1000) -> InstanceInfo | None:
        """What the collector holds about one instance, or ``None``."""

        def q(conn: sa.Connection) -> InstanceInfo | None:
            row = conn.execute(
                sa.select(instances).where(instances.c.instance_id == instance_id)
            ).first()
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
            for (_, kind, _), n in _sum_rows(_stored(conn, instance_id)).items():
                totals[kind] += n
            return InstanceInfo(
                **{k: v for k, v in row._asdict().items()},
                gaps=[(int(lo), int(hi)) for lo, hi in gaps],
                totals=dict(sorted(totals.items())),
            )

        return self.read(q)


def _stored(conn: sa.Connection, instance_id: str) -> Iterator[Heartbeat]:
    """Every heartbeat stored for ``instance_id``, re-read from its body."""
    h = instance_heartbeats
    q = sa.select(h.c.body).where(h.c.instance_id == instance_id).order_by(h.c.sequence)
    for (body,) in conn.execute(q):
        yield parse(bytes(body), limits=NO_LIMITS)


def _sum_rows(heartbeats: Iterable[Heartbeat]) -> dict[tuple[str, str, str], int]:
    """The counts of ``heartbeats`` per (day, kind, name); drops under kind ``dropped``
    on the UTC day of ``period_end``."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for hb in heartbeats:
        for day, kind, name, count in hb.rows:
            totals[(day, kind, name)] += count
        drop_day = _utc_day(hb.period_end)
        for reason, n in hb.dropped.items():
            if n:
                totals[(drop_day, "dropped", reason)] += n
    return totals


def _heartbeat_row(hb: Heartbeat, now: int) -> dict[str, Any]:
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
