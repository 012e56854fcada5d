"""Counts in one shape wherever they are read: ``{(kind, name): count}`` for usage,
``{(UTC day, kind, name): count}`` by day, and drops apart as ``{reason: count}``.

What was tracked into an outbox (:func:`totals`), what heartbeats carry
(:func:`payload_totals`, :func:`payload_day_totals`: a receiver's view), and what the
collector counted (:meth:`tests.support.collector.Collector.totals`) all compare with
``==``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from outbox.contract import PAYLOAD_KEYS

Totals = dict[tuple[str, str], int]
DayTotals = dict[tuple[str, str, str], int]


def totals(path: Path | str) -> Totals:
    """Every count stored in the outbox at ``path`` (its ``events`` rows), per (kind, name)."""
    c = sqlite3.connect(path)
    try:
        return {
            (k, n): int(s)
            for k, n, s in c.execute(
                "SELECT kind, name, sum(count) FROM events GROUP BY kind, name"
            )
        }
    finally:
        c.close()


def payload_day_totals(payloads: Iterable[dict[str, Any]]) -> DayTotals:
    """The usage heartbeat payloads carry, per (UTC day, kind, name), from their ``days``."""
    out: Counter[tuple[str, str, str]] = Counter()
    for p in payloads:
        for day, per in p["days"].items():
            for kind, key in PAYLOAD_KEYS.items():
                for name, n in per.get(key, {}).items():
                    out[(day, kind, name)] += n
    return dict(out)


def payload_totals(payloads: Iterable[dict[str, Any]]) -> Totals:
    """The usage heartbeat payloads carry, per (kind, name) (their top-level maps)."""
    out: Counter[tuple[str, str]] = Counter()
    for p in payloads:
        for kind, key in PAYLOAD_KEYS.items():
            for name, n in p[key].items():
                out[(kind, name)] += n
    return dict(out)


def summed(*parts: Totals) -> Totals:
    """Several totals added up (keys that reach 0 are kept out)."""
    out: Counter[tuple[str, str]] = Counter()
    for part in parts:
        out.update(part)
    return {k: n for k, n in out.items() if n}
