"""Outbox files for tests: the fixed instance id, rows written straight in (backlogs), what
was written in all, and the state of an outbox after a run, read from the file."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outbox import db, heartbeats, store
from outbox.store import Meta
from tests.support.clock import T0

#: The instance id outboxes made by tests get (its schedule slot is known: test_schedule.py).
INSTANCE_ID = "5d0c6a0e-2b7f-4d1c-9a3e-0f1e2d3c4b5a"

Row = tuple[str, str, int, int]  # (kind, name, count, at)


def query(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement, on a connection of its own (read from the file as is)."""
    c = sqlite3.connect(path, timeout=30)
    try:
        return [tuple(r) for r in c.execute(sql, args)]
    finally:
        c.close()


def raw_files_contain(path: Path, text: str) -> bool:
    """True when ``text`` is readable in the raw bytes of the outbox, its WAL or its -shm."""
    needle = text.encode()
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and needle in p.read_bytes():
            return True
    return False


@dataclass
class OutboxState:
    """An outbox after a drain, as the proof invariants need it."""

    instance_id: str
    integrity: str
    pending: str | None
    unsealed_events: int
    statuses: dict[str, int]
    last_sequence: int
    sent_ids: set[str]


class Outbox:
    """A real outbox file (made with the schema); ``add``/``add_rows`` write events straight
    in, in one transaction, and ``written`` keeps what was written per (kind, name)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.written: Counter[tuple[str, str]] = Counter()
        db.connect(path).close()

    def connect(self) -> sqlite3.Connection:
        return db.connect(self.path, busy_timeout=30)

    def add_rows(self, rows: Sequence[Row]) -> None:
        """Insert (kind, name, count, at) rows in one transaction, in this order."""
        conn = self.connect()
        try:
            with db.transaction(conn):
                conn.executemany(
                    "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", rows
                )
        finally:
            conn.close()
        for kind, name, count, _ in rows:
            self.written[(kind, name)] += count

    def add(self, n: int, *, kind: str = "api", name: str = "users.list", day: int = 0) -> None:
        """``n`` events of count 1, spread over the first hour of day ``day`` after T0."""
        self.add_rows([(kind, name, 1, T0 + day * 86400 + i % 3600) for i in range(n)])

    def rows(self) -> int:
        """How many event rows the file holds."""
        return int(query(self.path, "SELECT count(*) FROM events")[0][0])

    def state(self) -> OutboxState:
        conn = self.connect()
        try:
            hb = heartbeats.pending(conn)
            statuses = Counter[str](h.status for h in heartbeats.history(conn))
            return OutboxState(
                instance_id=store.instance_id(conn),
                integrity=str(conn.execute("PRAGMA integrity_check").fetchone()[0]),
                pending=None if hb is None else hb.id,
                unsealed_events=int(
                    conn.execute(
                        "SELECT coalesce(sum(count), 0) FROM events WHERE id > ?",
                        (store.sealed_through(conn),),
                    ).fetchone()[0]
                ),
                statuses=dict(statuses),
                last_sequence=store.get_int(conn, Meta.LAST_SEQUENCE),
                sent_ids={h.id for h in heartbeats.history(conn, status="sent")},
            )
        finally:
            conn.close()
