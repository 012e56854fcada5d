"""The public insights: aggregate numbers only, never an instance id, never a rare name.

:func:`collect` reads one snapshot and returns the JSON document that
``GET /api/insights`` serves and ``GET /insights`` renders:

* ``instances``: how many instances sent a heartbeat in the last 7 and 30 days
  (by receipt time), and in the window, by edition and by version;
* ``totals``: per kind (API calls, commands, UI actions) the summed counts over the
  window's UTC days, every name included;
* ``names`` (and ``top``, its first entries): per kind, every name that at least
  ``min_instances`` distinct instances reported in the window, with its count, how
  many instances used it and what share of the window's active instances that is;
* ``other``: per kind, the summed counts of every name not listed (reported by fewer
  instances, or past the first :data:`MAX_NAMES`), so that ``names`` + ``other``
  add up to ``totals`` exactly;
* ``api_usage``, ``command_usage``, ``ui_actions``: the listed names' counts in the
  heartbeat's own shape;
* ``daily``: one entry per UTC day of the window, zeros included;
* ``dropped``: what the instances reported they could not record, by the contract's
  reasons (anything else as ``other``).

k-anonymity: a name appears only when ``min_instances`` (K, default 3) distinct
instances reported it; versions likewise. An instance "reported a name in the window"
when the UTC days over which it reported it (``name_instances``: first and last day)
overlap the window. Sums are exact integers on both databases whatever the stored
values: each is taken as two sums of 32-bit halves and joined in Python.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from collector.schema import aggregated_metrics, instance_heartbeats, instances, name_instances
from outbox.contract import DROP_REASONS, KINDS, PAYLOAD_KEYS, iso_utc

DAY: Final = 86_400
KIND_LABELS: Final = {"api": "API calls", "command": "Commands", "ui": "UI actions"}
MAX_DAYS: Final = 366
MAX_TOP: Final = 100
#: Versions listed by name at most; the rest are counted as "other".
MAX_VERSIONS: Final = 20
#: Names per kind listed at most: the most used; the rest are counted in ``other``.
MAX_NAMES: Final = 1000
#: The default K: a name or version is public once this many instances reported it.
DEFAULT_MIN_INSTANCES: Final = 3
#: The label of everything not listed (no valid version or drop reason is spelled so;
#: names have their own ``other`` map, since "other" is a valid name).
OTHER: Final = "other"

_LOW: Final = 0xFFFFFFFF


def window(now: int, days: int) -> tuple[date, date]:
    """The first and last UTC day of a ``days``-long window ending today."""
    today = datetime.fromtimestamp(now, UTC).date()
    return today - timedelta(days=days - 1), today


def exact_sum(column: Any) -> tuple[Any, Any]:
    """Two aggregates whose :func:`joined` value is ``SUM(column)``, exactly.

    SQLite's ``SUM`` fails with "integer overflow" past 64 bits; the high and low
    32-bit halves summed apart stay far below it (2³¹ rows at least).
    """
    # Inline literals: a bound 32 would be a bigint, and PostgreSQL has no bigint >> bigint.
    shift: Any = sa.literal_column("32")
    low: Any = sa.literal_column(str(_LOW))
    return sa.func.sum(column.op(">>")(shift)), sa.func.sum(column.op("&")(low))


def joined(high: Any, low: Any) -> int:
    return (int(high or 0) << 32) + int(low or 0)


def share(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places (0.0 for an empty window), at most 1."""
    return 0.0 if whole <= 0 else round(min(part / whole, 1.0), 4)


def collect(
    conn: sa.Connection,
    *,
    now: int,
    days: int = 30,
    top: int = 10,
    min_instances: int = DEFAULT_MIN_INSTANCES,
) -> dict[str, Any]:
    """The insights document for the ``days`` UTC days up to today (``now``)."""
    first, last = window(now, days)
    start, end = first.isoformat(), last.isoformat()  # days are stored as YYYY-MM-DD
    since = now - days * DAY
    i, a, h, n = instances, aggregated_metrics, instance_heartbeats, name_instances

    def active(seconds: int) -> int:
        q = sa.select(sa.func.count()).select_from(i).where(i.c.last_seen > now - seconds)
        return int(conn.execute(q).scalar_one())

    in_window = active(days * DAY)

    def breakdown(column: sa.Column[str], limit: int, k: int) -> list[dict[str, Any]]:
        """Instances per value; values used by fewer than ``k`` (or past ``limit``) as
        one "other" entry."""
        c = sa.func.count().label("n")
        q = (
            sa.select(column, c)
            .where(i.c.last_seen > since)
            .group_by(column)
            .order_by(c.desc(), column)
        )
        rows = [(str(value), int(count)) for value, count in conn.execute(q)]
        listed = [(v, c) for v, c in rows if c >= k][:limit]
        rest = sum(c for _, c in rows) - sum(c for _, c in listed)
        out = [{column.name: v, "instances": c} for v, c in listed]
        return out + ([{column.name: OTHER, "instances": rest}] if rest else [])

    in_range = (a.c.day >= start) & (a.c.day <= end)
    sums: dict[tuple[str, str], int] = {}
    for day, kind, high, low in conn.execute(
        sa.select(a.c.day, a.c.kind, *exact_sum(a.c["count"]))
        .where(in_range & a.c.kind.in_(KINDS))
        .group_by(a.c.day, a.c.kind)
    ):
        sums[(day, kind)] = joined(high, low)
    daily: list[dict[str, str | int]] = []
    for offset in range(days):
        day = (first + timedelta(days=offset)).isoformat()
        daily.append({"day": day, **{k: sums.get((day, k), 0) for k in KINDS}})
    totals = {k: sum(int(d[k]) for d in daily) for k in KINDS}

    counted: dict[tuple[str, str], int] = {
        (kind, name): joined(high, low)
        for kind, name, high, low in conn.execute(
            sa.select(a.c.kind, a.c.name, *exact_sum(a.c["count"]))
            .where(in_range & a.c.kind.in_(KINDS))
            .group_by(a.c.kind, a.c.name)
        )
    }
    reach: dict[tuple[str, str], int] = {
        (kind, name): int(c)
        for kind, name, c in conn.execute(
            sa.select(n.c.kind, n.c.name, sa.func.count())
            .where((n.c.last_day >= start) & (n.c.first_day <= end))
            .group_by(n.c.kind, n.c.name)
        )
    }
    names: dict[str, list[dict[str, Any]]] = {}
    other: dict[str, int] = {}
    for kind in KINDS:
        public = sorted(
            (
                (name, total, reach.get((k, name), 0))
                for (k, name), total in counted.items()
                if k == kind and reach.get((k, name), 0) >= min_instances
            ),
            key=lambda r: (-r[1], r[0]),
        )[:MAX_NAMES]
        names[kind] = [
            {"name": name, "count": total, "instances": c, "share": share(c, in_window)}
            for name, total, c in public
        ]
        other[kind] = totals[kind] - sum(total for _, total, _ in public)

    dropped_by_reason: dict[str, int] = {
        str(reason): joined(high, low)
        for reason, high, low in conn.execute(
            sa.select(a.c.name, *exact_sum(a.c["count"]))
            .where(in_range & (a.c.kind == "dropped"))
            .group_by(a.c.name)
        )
    }
    # Only the contract's reasons are named; whatever else a sender reported is "other".
    dropped: dict[str, int] = {
        r: dropped_by_reason[r] for r in DROP_REASONS if dropped_by_reason.get(r)
    }
    unnamed = sum(v for r, v in dropped_by_reason.items() if r not in DROP_REASONS)
    if unnamed:
        dropped[OTHER] = unnamed

    heartbeats = conn.execute(
        sa.select(sa.func.count()).select_from(h).where(h.c.received_at > since)
    ).scalar_one()
    missing = joined(
        *conn.execute(sa.select(*exact_sum(i.c.missing)).where(i.c.last_seen > since)).one()
    )
    return {
        "generated_at": iso_utc(now),
        "days": days,
        "from": start,
        "to": end,
        "min_instances": min_instances,
        "instances": {
            "active_7d": active(7 * DAY),
            "active_30d": active(30 * DAY),
            "in_window": in_window,
            "by_edition": breakdown(i.c.edition, 10, 1),  # two fixed words, nothing to hide
            "by_version": breakdown(i.c.version, MAX_VERSIONS, min_instances),
        },
        "heartbeats": {"received": int(heartbeats), "missing": missing},
        "totals": totals,
        "top": {kind: names[kind][:top] for kind in KINDS},
        "names": names,
        "other": other,
        # The listed names' counts in a heartbeat's own shape (most used first).
        **{PAYLOAD_KEYS[kind]: {r["name"]: r["count"] for r in names[kind]} for kind in KINDS},
        "daily": daily,
        "dropped": dropped,
    }
