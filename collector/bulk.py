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
        """``INSERT … ON CONFLICT (key columns) DO UPDATE SET count = count + excluded.count``.

        ``rows`` hold the table's values in column order, the first ``keys`` being
        its primary key, each key once, sorted (PostgreSQL locks rows in this order,
        so concurrent batches cannot deadlock). A sum that would leave 64 bits becomes
        NULL, which the ``NOT NULL`` column refuses: the transaction fails (and is
        answered 500) instead of SQLite turning the count into an inexact REAL.
        Per dialect:

        * SQLite (in-process): one compiled statement, the rows handed straight to
          ``sqlite3``'s ``executemany``.
        * PostgreSQL (a round trip per statement): a single
          ``INSERT … SELECT * FROM unnest(array, array, …)``, one array per column.
        """

        def add(stmt: Any) -> tuple[dict[str, Any], Any]:
            count, new = table.c["count"], stmt.excluded["count"]
            fits = sa.case(
                (count <= sa.literal_column(str(INT64_MAX)) - new, count + new), else_=sa.null()
            )
            return {"count": fits}, None

        self._upsert(conn, table, rows, keys=keys, update=add)

    def upsert_span(
        self, conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]]
    ) -> None:
        """Widen ``first_day``/``last_day`` spans (``name_instances``); rows as for
        :meth:`upsert_add`. A span that already covers the new one is not written."""

        def widen(stmt: Any) -> tuple[dict[str, Any], Any]:
            first, last = table.c.first_day, table.c.last_day
            new_first, new_last = stmt.excluded.first_day, stmt.excluded.last_day
            return {
                "first_day": sa.case((new_first < first, new_first), else_=first),
                "last_day": sa.case((new_last > last, new_last), else_=last),
            }, (new_first < first) | (new_last > last)

        self._upsert(conn, table, rows, keys=len(table.primary_key.columns), update=widen)

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
