"""The public insights: aggregate numbers only, never an instance id.

:func:`collect` reads one snapshot and returns the JSON document that
``GET /api/insights`` serves and ``GET /insights`` renders:

* ``instances``: how many instances sent a heartbeat in the last 7 and 30 days
  (by receipt time), and in the window, by edition and by version;
* ``totals`` and ``top``: per kind (API calls, commands, UI actions) the summed
  counts over the window's UTC days, and the most used names;
* ``api_usage``, ``command_usage``, ``ui_actions``: every name's count in the
  window, the maps of a heartbeat summed over all instances (at most 1,000 names
  per kind, the most used);
* ``daily``: one entry per UTC day of the window, zeros included;
* ``dropped``: what the instances reported they could not record, by reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from collector.schema import aggregated_metrics, instance_heartbeats, instances
from outbox.contract import KINDS, PAYLOAD_KEYS, iso_utc

DAY: Final = 86_400
KIND_LABELS: Final = {"api": "API calls", "command": "Commands", "ui": "UI actions"}
MAX_DAYS: Final = 366
MAX_TOP: Final = 100
#: Versions listed by name; the rest are left out (the sum of the list may be short).
MAX_VERSIONS: Final = 20
#: Names per kind in the full maps (``api_usage`` …): the most used.
MAX_NAMES: Final = 1000


def window(now: int, days: int) -> tuple[date, date]:
    """The first and last UTC day of a ``days``-long window ending today."""
    today = datetime.fromtimestamp(now, UTC).date()
    return today - timedelta(days=days - 1), today


def collect(conn: sa.Connection, *, now: int, days: int = 30, top: int = 10) -> dict[str, Any]:
    """The insights document for the ``days`` UTC days up to today (``now``)."""
    first, last = window(now, days)
    start, end = first.isoformat(), last.isoformat()  # days are stored as YYYY-MM-DD
    since = now - days * DAY
    i, a, h = instances, aggregated_metrics, instance_heartbeats

    def active(seconds: int) -> int:
        q = sa.select(sa.func.count()).select_from(i).where(i.c.last_seen > now - seconds)
        return int(conn.execute(q).scalar_one())

    def breakdown(column: sa.Column[str], limit: int) -> list[dict[str, Any]]:
        n = sa.func.count().label("n")
        q = (
            sa.select(column, n)
            .where(i.c.last_seen > since)
            .group_by(column)
            .order_by(n.desc(), column)
            .limit(limit)
        )
        return [{column.name: value, "instances": int(c)} for value, c in conn.execute(q)]

    in_window = (a.c.day >= start) & (a.c.day <= end)
    sums: dict[tuple[str, str], int] = {}
    for day, kind, total in conn.execute(
        sa.select(a.c.day, a.c.kind, sa.func.sum(a.c["count"]))
        .where(in_window & a.c.kind.in_(KINDS))
        .group_by(a.c.day, a.c.kind)
    ):
        sums[(day, kind)] = int(total)
    daily: list[dict[str, str | int]] = []
    for offset in range(days):
        day = (first + timedelta(days=offset)).isoformat()
        daily.append({"day": day, **{k: sums.get((day, k), 0) for k in KINDS}})

    by_name: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        total_col = sa.func.sum(a.c["count"]).label("total")
        by_name[kind] = {
            name: int(total)
            for name, total in conn.execute(
                sa.select(a.c.name, total_col)
                .where(in_window & (a.c.kind == kind))
                .group_by(a.c.name)
                .order_by(total_col.desc(), a.c.name)
                .limit(MAX_NAMES)
            )
        }

    dropped = {
        reason: int(total)
        for reason, total in conn.execute(
            sa.select(a.c.name, sa.func.sum(a.c["count"]))
            .where(in_window & (a.c.kind == "dropped"))
            .group_by(a.c.name)
            .order_by(a.c.name)
        )
    }
    heartbeats = conn.execute(
        sa.select(sa.func.count()).select_from(h).where(h.c.received_at > since)
    ).scalar_one()
    missing = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(i.c.missing), 0)).where(i.c.last_seen > since)
    ).scalar_one()
    return {
        "generated_at": iso_utc(now),
        "days": days,
        "from": start,
        "to": end,
        "instances": {
            "active_7d": active(7 * DAY),
            "active_30d": active(30 * DAY),
            "in_window": active(days * DAY),
            "by_edition": breakdown(i.c.edition, 10),
            "by_version": breakdown(i.c.version, MAX_VERSIONS),
        },
        "heartbeats": {"received": int(heartbeats), "missing": int(missing)},
        "totals": {k: sum(d[k] for d in daily) for k in KINDS},
        "top": {
            kind: [{"name": n, "count": c} for n, c in list(by_name[kind].items())[:top]]
            for kind in KINDS
        },
        # The same maps as a heartbeat's, summed over every instance (most used first).
        **{PAYLOAD_KEYS[kind]: by_name[kind] for kind in KINDS},
        "daily": daily,
        "dropped": dropped,
    }
