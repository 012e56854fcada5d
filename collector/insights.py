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

from collector.schema import (
    HALF,
    aggregated_metrics,
    day_of_seconds,
    day_totals,
    instance_heartbeats,
    instances,
    metric_months,
    receipt_days,
)
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
    low: Any = sa.literal_column(str(HALF))
    return sa.func.sum(column.op(">>")(shift)), sa.func.sum(column.op("&")(low))


def joined(high: Any, low: Any) -> int:
    return (int(high or 0) << 32) + int(low or 0)


def share(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places (0.0 for an empty window), at most 1."""
    return 0.0 if whole <= 0 else round(min(part / whole, 1.0), 4)


def month_end(day: date) -> date:
    """The last day of ``day``'s month."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def per_name(conn: sa.Connection, first: date, last: date) -> dict[tuple[str, str], list[int]]:
    """(kind, name) → [summed count over the window, instances that reported it in the
    window], every kind (``dropped`` too), without reading the window day by day.

    An instance reported a name in the window [S, T] when its span (``name_instances``:
    first day f, last day l) overlaps it: l ≥ S and f ≤ T. Since f ≤ l, that is
    #(l ≥ S) − #(f > T): the span ``ends`` on days from S on, less the ``starts`` after
    T. Both, and the counts, come from ``metric_months`` for whole months and from
    ``aggregated_metrics`` for the days of S's month: the days from S to the month's end
    are added, or (when fewer) the days before S taken out of the whole month. The counts
    of the days after T in T's month (a clock ahead of ours) are taken out again. A year
    is thus at most 15 days and 13 months of rows per name, whatever the number of
    instances.
    """
    a, m = aggregated_metrics, metric_months
    start, end = first.isoformat(), last.isoformat()
    month_start = first.replace(day=1)
    head = (first - month_start).days  # days of S's month before S
    tail = (month_end(first) - first).days + 1  # S to the end of its month
    out: dict[tuple[str, str], list[int]] = {}

    def add(kind: str, name: str, high: Any, low: Any, reach: Any, sign: int = 1) -> None:
        row = out.setdefault((kind, name), [0, 0])
        row[0] += sign * joined(high, low)
        row[1] += sign * int(reach or 0)

    def halves(column: Any, within: Any) -> tuple[Any, Any]:
        """:func:`exact_sum` of ``column`` over the rows where ``within`` holds."""
        return exact_sum(sa.case((within, column), else_=0))

    count = a.c["count"]
    if head < tail:  # S's whole month, less its days before S
        months = m.c.month >= start[:7]
        days = (a.c.day >= month_start.isoformat()) & (a.c.day < start)
        sign = -1
    else:  # the days from S to the end of its month, then the months after
        months = m.c.month > start[:7]
        days = (a.c.day >= start) & (a.c.day <= month_end(first).isoformat())
        sign = 1
    for kind, name, high, low, ends in conn.execute(
        sa.select(a.c.kind, a.c.name, *halves(count, a.c.day <= end), sa.func.sum(a.c.ends))
        .where(days)
        .group_by(a.c.kind, a.c.name)
    ):
        add(kind, name, high, low, ends, sign)
    in_window = m.c.month <= end[:7]
    for kind, name, high, low, ends in conn.execute(
        sa.select(
            m.c.kind,
            m.c.name,
            sa.func.sum(sa.case((in_window, m.c.count_high), else_=0)),
            sa.func.sum(sa.case((in_window, m.c.count_low), else_=0)),
            sa.func.sum(m.c.ends),
        )
        .where(months)
        .group_by(m.c.kind, m.c.name)
    ):
        add(kind, name, high, low, ends)
    # Days after T: their span starts; and their counts where T's whole month was added.
    added_whole = sign < 0 or end[:7] > start[:7]
    spill = month_end(last).isoformat() if added_whole else end
    for kind, name, high, low, starts in conn.execute(
        sa.select(a.c.kind, a.c.name, *halves(count, a.c.day <= spill), sa.func.sum(a.c.starts))
        .where(a.c.day > end)
        .group_by(a.c.kind, a.c.name)
    ):
        add(kind, name, high, low, starts, sign=-1)
    return out


def received_since(conn: sa.Connection, since: int) -> int:
    """Heartbeats received after ``since``: whole days from ``receipt_days``, the rest of
    ``since``'s own day from ``instance_heartbeats``."""
    h, r = instance_heartbeats, receipt_days
    next_day = (since // DAY + 1) * DAY
    part = conn.execute(
        sa.select(sa.func.count())
        .select_from(h)
        .where((h.c.received_at > since) & (h.c.received_at < next_day))
    ).scalar_one()
    whole = conn.execute(
        sa.select(sa.func.sum(r.c.heartbeats)).where(r.c.day >= day_of_seconds(next_day))
    ).scalar()
    return int(part) + int(whole or 0)


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
    i = instances

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

    t = day_totals
    sums: dict[tuple[str, str], int] = {
        (day, kind): joined(high, low)
        for day, kind, high, low in conn.execute(
            sa.select(t.c.day, t.c.kind, t.c.count_high, t.c.count_low).where(
                (t.c.day >= start) & (t.c.day <= end) & t.c.kind.in_(KINDS)
            )
        )
    }
    daily: list[dict[str, str | int]] = []
    for offset in range(days):
        day = (first + timedelta(days=offset)).isoformat()
        daily.append({"day": day, **{k: sums.get((day, k), 0) for k in KINDS}})
    totals = {k: sum(int(d[k]) for d in daily) for k in KINDS}

    by_name = per_name(conn, first, last)
    counted = {key: c for key, (c, _) in by_name.items() if key[0] in KINDS}
    reach = {key: r for key, (_, r) in by_name.items()}
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

    dropped_by_reason = {name: c for (k, name), (c, _) in by_name.items() if k == "dropped"}
    # Only the contract's reasons are named; whatever else a sender reported is "other".
    dropped: dict[str, int] = {
        r: dropped_by_reason[r] for r in DROP_REASONS if dropped_by_reason.get(r)
    }
    unnamed = sum(v for r, v in dropped_by_reason.items() if r not in DROP_REASONS)
    if unnamed:
        dropped[OTHER] = unnamed

    heartbeats = received_since(conn, since)
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
