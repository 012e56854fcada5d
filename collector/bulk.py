"""Dialect-aware statements for the hot paths of a write transaction.

SQLAlchemy Core builds every statement; :class:`Statements` compiles each hot one
once per storage and runs it the way its dialect runs fastest. The values handed
to these statements must be plain ``str`` and ``int`` (days are ``YYYY-MM-DD``
text for that reason): on SQLite they go to the driver without SQLAlchemy's
per-row parameter processing, which was most of the CPU time of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.compiler import SQLCompiler

Dialect = Literal["sqlite", "postgresql"]
INT64_MAX = 2**63 - 1


class Statements:
    """The statements of one storage (one dialect), compiled on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[str, SQLCompiler] = {}

    def insert(self, table: sa.Table) -> Any:
        """The dialect's ``INSERT`` (with ``on_conflict_do_nothing``/``_do_update``)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def locking(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's writer already holds the lock."""
        return query.with_for_update() if self.dialect == "postgresql" else query

    def upsert_add(
        self, conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]], *, keys: int
    ) -> None:
        """``INSERT … ON CONFLICT (key columns) DO UPDATE SET c = c + excluded.c`` for every
        other column ``c``.

        ``rows`` hold the table's values in column order, the first ``keys`` being
        its primary key, each key once, sorted (PostgreSQL locks rows in this order,
        so concurrent batches cannot deadlock). A ``count`` that would leave 64 bits
        becomes NULL, which the ``NOT NULL`` column refuses: the transaction fails (and
        is answered 500) instead of SQLite turning the count into an inexact REAL.
        Per dialect:

        * SQLite (in-process): one compiled statement, the rows handed straight to
          ``sqlite3``'s ``executemany``.
        * PostgreSQL (a round trip per statement): a single
          ``INSERT … SELECT * FROM unnest(array, array, …)``, one array per column.
        """

        def add(stmt: Any) -> tuple[dict[str, Any], Any]:
            set_: dict[str, Any] = {}
            for column in list(table.columns)[keys:]:
                old, new = column, stmt.excluded[column.name]
                if column.name == "count":
                    fits = old <= sa.literal_column(str(INT64_MAX)) - new
                    set_[column.name] = sa.case((fits, old + new), else_=sa.null())
                else:
                    set_[column.name] = old + new
            return set_, None

        self._upsert(conn, table, rows, keys=keys, update=add)

    def _upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: list[tuple[Any, ...]],
        *,
        keys: int,
        update: Callable[[Any], tuple[dict[str, Any], Any]],
    ) -> None:
        columns = [c.name for c in table.columns]
        compiled = self._compiled.get(table.name)
        if compiled is None:
            stmt = self.insert(table)
            if self.dialect == "postgresql":
                arrays = [sa.bindparam(f"a_{c.name}", type_=ARRAY(c.type)) for c in table.columns]
                source = sa.func.unnest(*arrays).table_valued(*columns).render_derived()
                stmt = stmt.from_select(columns, sa.select(*(source.c[c] for c in columns)))
            set_, where = update(stmt)
            stmt = stmt.on_conflict_do_update(index_elements=columns[:keys], set_=set_, where=where)
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

    def spans(
        self, conn: sa.Connection, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[str, str]]:
        """The stored ``name_instances`` spans (first day, last day) of ``keys``
        ((instance id, kind, name), sorted): one statement per 3,000 keys."""
        found: dict[tuple[str, str, str], tuple[str, str]] = {}
        for i in range(0, len(keys), 3000):
            chunk = keys[i : i + 3000]
            if self.dialect == "postgresql":
                q = sa.text(
                    "SELECT n.instance_id, n.kind, n.name, n.first_day, n.last_day "
                    "FROM name_instances n JOIN unnest(CAST(:i AS varchar[]), "
                    "CAST(:k AS varchar[]), CAST(:n AS varchar[])) AS k(instance_id, kind, name) "
                    "USING (instance_id, kind, name)"
                )
                params: Any = {
                    "i": [k[0] for k in chunk],
                    "k": [k[1] for k in chunk],
                    "n": [k[2] for k in chunk],
                }
                rows = conn.execute(q, params)
            else:
                # The keys first (CROSS JOIN keeps that order), one primary-key search
                # each; "(…) IN (VALUES …)" would scan the table instead.
                values = ",".join(["(?,?,?)"] * len(chunk))
                rows = conn.exec_driver_sql(
                    "SELECT n.instance_id, n.kind, n.name, n.first_day, n.last_day "
                    f"FROM (VALUES {values}) AS k CROSS JOIN name_instances AS n "
                    "ON n.instance_id = k.column1 AND n.kind = k.column2 AND n.name = k.column3",
                    tuple(v for key in chunk for v in key),
                )
            for iid, kind, name, first, last in rows:
                found[(iid, kind, name)] = (first, last)
        return found

    def write_spans(
        self,
        conn: sa.Connection,
        inserts: list[tuple[str, str, str, str, str]],
        updates: list[tuple[str, str, str, str, str]],
    ) -> None:
        """Insert new ``name_instances`` rows and set the days of changed ones (rows:
        instance id, kind, name, first day, last day; sorted)."""
        if self.dialect == "postgresql":
            arrays = (
                "unnest(CAST(:i AS varchar[]), CAST(:k AS varchar[]), CAST(:n AS varchar[]), "
                "CAST(:f AS varchar[]), CAST(:l AS varchar[])) AS u(i, k, n, f, l)"
            )
            for rows, statement in (
                (inserts, f"INSERT INTO name_instances SELECT i, k, n, f, l FROM {arrays}"),
                (
                    updates,
                    f"UPDATE name_instances SET first_day = u.f, last_day = u.l FROM {arrays} "
                    "WHERE instance_id = u.i AND kind = u.k AND name = u.n",
                ),
            ):
                if rows:
                    columns = list(zip(*rows, strict=True))
                    conn.execute(
                        sa.text(statement), dict(zip("iknfl", map(list, columns), strict=True))
                    )
            return
        if inserts:
            conn.exec_driver_sql("INSERT INTO name_instances VALUES (?,?,?,?,?)", inserts)
        if updates:
            conn.exec_driver_sql(
                "UPDATE name_instances SET first_day = ?4, last_day = ?5 "
                "WHERE instance_id = ?1 AND kind = ?2 AND name = ?3",
                updates,
            )

    def executemany(
        self,
        conn: sa.Connection,
        key: str,
        build: Callable[[], sa.Insert | sa.Update],
        rows: list[dict[str, Any]],
    ) -> None:
        """Run a statement (built and compiled once, under ``key``) for each of ``rows``."""
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = build().compile(dialect=conn.dialect)
            self._compiled[key] = compiled
        order = compiled.positiontup
        if self.dialect == "sqlite" and order is not None:
            conn.exec_driver_sql(compiled.string, [tuple(r[k] for k in order) for r in rows])
        else:
            conn.execute(cast(sa.Executable, compiled.statement), rows)
