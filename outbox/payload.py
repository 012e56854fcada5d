"""The heartbeat payload, schema version 1 (DESIGN.md section 2): a pure function of rows.

:func:`build_payload` turns per-day aggregates (``kind, name, day, count``) and the
pending drop counts into the payload dict; :func:`encode` freezes it into the
bytes that are stored and sent. No clock, no database, no randomness here: the
caller passes the id, sequence and times. The encoding and the hash are the
contract's (:func:`outbox.contract.encode`, :func:`outbox.contract.sha256_hex`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from outbox.contract import (
    CONTRACT_DROP_REASONS,
    KINDS,
    NAME_CAP,
    PAYLOAD_KEYS,
    PAYLOAD_SCHEMA_VERSION,
    Kind,
)


@dataclass(frozen=True)
class Aggregate:
    """The summed count of one (kind, name) on one UTC day."""

    kind: Kind
    name: str
    day: date
    count: int


def cap_names(aggregates: Iterable[Aggregate], cap: int = NAME_CAP) -> tuple[list[Aggregate], int]:
    """Keep at most ``cap`` distinct names per kind: the most used, ties by name.

    :returns: the kept aggregates and the summed count of what was cut.
    """
    rows = list(aggregates)
    totals: dict[tuple[Kind, str], int] = defaultdict(int)
    for a in rows:
        totals[(a.kind, a.name)] += a.count
    kept: set[tuple[Kind, str]] = set()
    for kind in KINDS:
        names = sorted(
            ((n, c) for (k, n), c in totals.items() if k == kind), key=lambda nc: (-nc[1], nc[0])
        )
        kept.update((kind, n) for n, _ in names[:cap])
    cut = sum(c for key, c in totals.items() if key not in kept)
    return [a for a in rows if (a.kind, a.name) in kept], cut


def build_payload(
    aggregates: Iterable[Aggregate],
    *,
    dropped: Mapping[str, int],
    heartbeat_id: str | None,
    instance_id: str | None,
    sequence: int,
    period_start: str,
    period_end: str,
    version: str,
    edition: str,
    name_cap: int = NAME_CAP,
) -> dict[str, Any]:
    """The payload dict of one heartbeat, keys in contract order, names sorted.

    Names past ``name_cap`` per kind are counted in ``dropped.over_capacity``.
    The top-level maps are the sums of ``days``; only counts ≥ 1 appear.
    """
    kept, cut = cap_names(aggregates, name_cap)
    top: dict[Kind, dict[str, int]] = {k: defaultdict(int) for k in KINDS}
    days: dict[date, dict[Kind, dict[str, int]]] = defaultdict(
        lambda: {k: defaultdict(int) for k in KINDS}
    )
    for a in kept:
        if a.count <= 0:
            continue
        top[a.kind][a.name] += a.count
        days[a.day][a.kind][a.name] += a.count
    drops: dict[str, int] = {r: int(dropped.get(r, 0)) for r in CONTRACT_DROP_REASONS}
    for reason, n in sorted(dropped.items()):
        if reason not in drops and n:
            drops[reason] = int(n)
    drops["over_capacity"] += cut
    return {
        "schema_version": PAYLOAD_SCHEMA_VERSION,
        "heartbeat_id": heartbeat_id,
        "instance_id": instance_id,
        "sequence": sequence,
        "period_start": period_start,
        "period_end": period_end,
        "app": {"version": version, "edition": edition},
        **{PAYLOAD_KEYS[k]: dict(sorted(top[k].items())) for k in KINDS},
        "days": {
            d.isoformat(): {PAYLOAD_KEYS[k]: dict(sorted(per[k].items())) for k in KINDS}
            for d, per in sorted(days.items())
        },
        "dropped": drops,
    }
