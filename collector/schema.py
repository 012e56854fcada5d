"""The collector's tables (SQLAlchemy Core) and their versioned migrations.

The same definitions serve SQLite and PostgreSQL. Times are unix seconds in
64-bit integers, UTC days are ``YYYY-MM-DD`` text (which sorts and compares as the
date does, and needs no conversion in either driver), ids are the canonical
36-character UUID text.
Nothing here holds a client address: the collector never learns more about a
sender than what its heartbeat says.

Migrations: ``schema_version`` holds one row per applied version of this database
(not of the heartbeat payload: that is ``outbox.contract.PAYLOAD_SCHEMA_VERSION``). A
new database is created at :data:`DATABASE_SCHEMA_VERSION` straight from these tables;
an older one is
brought up by the numbered steps in :data:`UPGRADES` (step *n* turns version
*n - 1* into *n*), all in one transaction. A database newer than this code is
refused (:class:`~collector.errors.SchemaTooNew`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa

from collector.errors import SchemaTooNew
from collector.validate import NO_LIMITS, parse
from outbox.contract import day_of

#: The version of the collector's DATABASE (its tables), raised by every migration.
DATABASE_SCHEMA_VERSION: Final = 3

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

#: One row per heartbeat ever accepted: the idempotency record, and the body as
#: received (what ``forget`` subtracts exactly, and what an operator can audit).
instance_heartbeats = sa.Table(
    "instance_heartbeats",
    metadata,
    sa.Column("heartbeat_id", sa.String(36), primary_key=True),
    sa.Column("instance_id", sa.String(36), nullable=False, index=True),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("period_start", sa.BigInteger, nullable=False),
    sa.Column("period_end", sa.BigInteger, nullable=False),
    sa.Column("edition", sa.String(16), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

#: The public totals: per UTC day, kind (api, command, ui, dropped) and name; and how
#: many ``name_instances`` spans of that kind and name start (``starts``: first day) and
#: end (``ends``: last day) on that day, what the insights count instances with.
aggregated_metrics = sa.Table(
    "aggregated_metrics",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("starts", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("ends", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint("count >= 0", name="aggregated_metrics_count_nonnegative"),
    # On SQLite stored in key order (one B-tree, not a table and its key index): an
    # upsert writes one, and a window of days is one contiguous range.
    sqlite_with_rowid=False,
)

#: ``aggregated_metrics`` summed per UTC month (``YYYY-MM``): what a long window reads
#: instead of its days. The count is kept as two sums, of the 32-bit high and low halves
#: of what was added (``count = count_high * 2**32 + count_low``), so a month of days
#: near 2⁶³ stays exact.
metric_months = sa.Table(
    "metric_months",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("count_high", sa.BigInteger, nullable=False),
    sa.Column("count_low", sa.BigInteger, nullable=False),
    sa.Column("starts", sa.BigInteger, nullable=False),
    sa.Column("ends", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

#: ``aggregated_metrics`` summed per UTC day and kind (the daily chart), halves as above.
day_totals = sa.Table(
    "day_totals",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("count_high", sa.BigInteger, nullable=False),
    sa.Column("count_low", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

#: Heartbeats stored per UTC day of receipt (``instance_heartbeats.received_at``).
receipt_days = sa.Table(
    "receipt_days",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("heartbeats", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

#: What folded bodies counted: per instance and UTC day, ``counts`` is a zlib-compressed
#: JSON object of ``"<kind> <name>"`` → the summed count of every folded heartbeat of that
#: instance for that day (drops as kind ``dropped``, on the day of ``period_end``, as in
#: ``aggregated_metrics``). A folded heartbeat keeps its ``instance_heartbeats`` row (id,
#: hash: resends are still duplicates), with an empty body.
instance_days = sa.Table(
    "instance_days",
    metadata,
    sa.Column("instance_id", sa.String(36), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("counts", sa.LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

#: The tables derived from the others (kept in the same transactions), rebuilt from them
#: by :func:`rebuild_rollups`.
ROLLUPS: Final = (metric_months, day_totals, receipt_days)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("instance_id", sa.String(36), primary_key=True),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False, index=True),
    sa.Column("edition", sa.String(16), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),  # the highest seen
    sa.Column("heartbeats", sa.BigInteger, nullable=False),
    sa.Column("missing", sa.BigInteger, nullable=False),  # sequence numbers never received
    sa.Column("repeats", sa.BigInteger, nullable=False),  # a sequence number seen twice
    #: ``outbox.contract.secret_hash`` of the instance secret, bound by the first accepted
    #: heartbeat (trust on first use); NULL only for instances stored before version 2,
    #: until their next heartbeat binds one.
    sa.Column("secret_hash", sa.String(64), nullable=True),
)

#: Which instances reported which name, and over which UTC days (first and last): what
#: the public insights count distinct instances with (k-anonymity, "used by N
#: instances"). One row per (instance, kind, name), whatever the number of days or
#: heartbeats: 10,000 instances using 1,000 names of each kind is 30 million rows at
#: most, growing with the fleet, not with time. Keyed by instance first, and on SQLite
#: stored in its key's order (WITHOUT ROWID): the rows one heartbeat touches sit
#: together (a page or two to write, not one per name), and forget deletes one range.
name_instances = sa.Table(
    "name_instances",
    metadata,
    sa.Column("instance_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("first_day", sa.String(10), nullable=False),
    sa.Column("last_day", sa.String(10), nullable=False),
    sqlite_with_rowid=False,
)

#: Runs of sequence numbers an instance skipped (``first_missing``..``last_missing``);
#: a late heartbeat that fills one splits or shrinks it.
sequence_gaps = sa.Table(
    "sequence_gaps",
    metadata,
    sa.Column("instance_id", sa.String(36), primary_key=True),
    sa.Column("first_missing", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_missing", sa.BigInteger, nullable=False),
)


def _upgrade_2(conn: sa.Connection) -> None:
    """Version 2: instance credentials and the per-name instance spans.

    Existing instances get no credential (their next accepted heartbeat binds one);
    ``name_instances`` is filled from the stored bodies, the record of what was counted.
    """
    conn.execute(sa.text("ALTER TABLE instances ADD COLUMN secret_hash VARCHAR(64)"))
    name_instances.create(conn)
    spans: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    h = instance_heartbeats
    for (body,) in conn.execute(sa.select(h.c.body).execution_options(yield_per=500)):
        hb = parse(bytes(body), limits=NO_LIMITS)
        for day, kind, name, _ in hb.rows:
            span = spans.get((hb.instance_id, kind, name))
            if span is None:
                spans[(hb.instance_id, kind, name)] = [day, day]
            else:
                span[0], span[1] = min(span[0], day), max(span[1], day)
    rows = [
        {"instance_id": i, "kind": k, "name": n, "first_day": f, "last_day": la}
        for (i, k, n), (f, la) in sorted(spans.items())
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(name_instances), rows[start : start + 5000])


HALF: Final = 0xFFFFFFFF


def day_of_seconds(seconds: int) -> str:
    """The UTC day (``YYYY-MM-DD``) of a unix time."""
    return day_of(seconds).isoformat()


def rebuild_rollups(conn: sa.Connection) -> None:
    """Recompute ``starts``/``ends`` and the :data:`ROLLUPS` from ``aggregated_metrics``,
    ``name_instances`` and ``instance_heartbeats`` (the upgrade to version 3; tests that
    write those tables directly call it too). Set-based SQL, the same on both databases."""
    for t in ROLLUPS:
        conn.execute(sa.delete(t))
    conn.execute(sa.text("UPDATE aggregated_metrics SET starts = 0, ends = 0"))
    for column, day in (("starts", "first_day"), ("ends", "last_day")):
        conn.execute(
            sa.text(
                f"UPDATE aggregated_metrics SET {column} = s.n FROM "
                f"(SELECT {day} AS day, kind, name, count(*) AS n FROM name_instances "
                f"GROUP BY {day}, kind, name) AS s "
                "WHERE aggregated_metrics.day = s.day AND aggregated_metrics.kind = s.kind "
                "AND aggregated_metrics.name = s.name"
            )
        )
    conn.execute(
        sa.text(
            "INSERT INTO metric_months (month, kind, name, count_high, count_low, starts, ends) "
            f"SELECT substr(day, 1, 7), kind, name, sum(count >> 32), sum(count & {HALF}), "
            "sum(starts), sum(ends) FROM aggregated_metrics GROUP BY substr(day, 1, 7), kind, name"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO day_totals (day, kind, count_high, count_low) "
            f"SELECT day, kind, sum(count >> 32), sum(count & {HALF}) FROM aggregated_metrics "
            "GROUP BY day, kind"
        )
    )
    received = conn.execute(
        sa.text(
            "SELECT received_at / 86400 AS d, count(*) FROM instance_heartbeats "
            "GROUP BY received_at / 86400"
        )
    )
    _insert(
        conn,
        receipt_days,
        [{"day": day_of_seconds(int(d) * 86_400), "heartbeats": int(c)} for d, c in received],
    )


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(table), rows[start : start + 5000])


def _upgrade_3(conn: sa.Connection) -> None:
    """Version 3: the rollups that let the insights of a year answer without reading a
    year of rows (``starts``/``ends``, ``metric_months``, ``day_totals``,
    ``receipt_days``), filled from what is stored; ``instance_days`` for folded bodies."""
    if conn.dialect.name == "sqlite":  # rebuilt in key order (WITHOUT ROWID)
        conn.execute(sa.text("ALTER TABLE aggregated_metrics RENAME TO aggregated_metrics_v2"))
        aggregated_metrics.create(conn)
        conn.execute(
            sa.text(
                "INSERT INTO aggregated_metrics (day, kind, name, count) "
                "SELECT day, kind, name, count FROM aggregated_metrics_v2"
            )
        )
        conn.execute(sa.text("DROP TABLE aggregated_metrics_v2"))
    else:
        for column in ("starts", "ends"):
            conn.execute(
                sa.text(
                    f"ALTER TABLE aggregated_metrics ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"
                )
            )
    for t in ROLLUPS:
        t.create(conn)
    instance_days.create(conn)
    rebuild_rollups(conn)


#: Step n brings a database from version n - 1 to n.
UPGRADES: Final[dict[int, Callable[[sa.Connection], None]]] = {2: _upgrade_2, 3: _upgrade_3}


def current_version(conn: sa.Connection) -> int:
    """The version recorded in the database; 0 when it has no collector tables."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(conn: sa.Connection, *, now: int) -> int:
    """Create or upgrade the schema inside the caller's transaction.

    :returns: the version the database was at before (0 for a new one).
    :raises SchemaTooNew: the database was written by a newer collector.
    """
    if conn.dialect.name == "postgresql":
        # Two collectors starting at once must not both create the tables.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7426001)"))
    before = current_version(conn)
    if before > DATABASE_SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database is at collector schema version {before}, but this collector "
            f"knows versions up to {DATABASE_SCHEMA_VERSION}: upgrade helios-telemetry"
        )
    if before == 0:
        metadata.create_all(conn)
        conn.execute(
            sa.insert(schema_version), {"version": DATABASE_SCHEMA_VERSION, "applied_at": now}
        )
        return 0
    for step in range(before + 1, DATABASE_SCHEMA_VERSION + 1):
        UPGRADES[step](conn)
        conn.execute(sa.insert(schema_version), {"version": step, "applied_at": now})
    return before
