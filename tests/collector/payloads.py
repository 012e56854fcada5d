"""Heartbeat bodies for collector tests, built by the outbox's own payload code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from outbox.contract import KINDS, PAYLOAD_KEYS, encode
from outbox.payload import Aggregate, build_payload
from tests.support.collector import DEFAULT_INSTANCE, auth, auth_of, secret_for

IID = DEFAULT_INSTANCE
IID2 = "5d0c0000-0000-4000-8000-000000000002"
DAY = "2026-11-25"  # the UTC day of tests.support.clock.T0
H = {"Content-Type": "application/json"}

#: (kind, name, day) -> count: a small realistic mix over two days.
MIX: dict[tuple[str, str, str], int] = {
    ("api", "users.list", "2026-11-24"): 5,
    ("api", "users.list", DAY): 7,
    ("api", "groups.get", DAY): 3,
    ("command", "sync", DAY): 1,
    ("ui", "bulk_edit", "2026-11-24"): 2,
}


def payload(
    counts: Mapping[tuple[str, str, str], int] | None = None,
    *,
    heartbeat_id: str | None = None,
    instance_id: str = IID,
    sequence: int = 1,
    dropped: Mapping[str, int] | None = None,
    version: str = "1.4.2",
    edition: str = "community",
    period_start: str = "2026-11-24T09:00:00Z",
    period_end: str = "2026-11-25T10:00:00Z",
) -> dict[str, Any]:
    rows = [
        Aggregate(kind, name, date.fromisoformat(day), n)  # type: ignore[arg-type]
        for (kind, name, day), n in (MIX if counts is None else counts).items()
    ]
    return build_payload(
        rows,
        dropped=dropped or {},
        heartbeat_id=heartbeat_id or str(uuid.uuid4()),
        instance_id=instance_id,
        sequence=sequence,
        period_start=period_start,
        period_end=period_end,
        version=version,
        edition=edition,
    )


def body(counts: Mapping[tuple[str, str, str], int] | None = None, **kw: Any) -> bytes:
    return encode(payload(counts, **kw))


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def totals(counts: Mapping[tuple[str, str, str], int]) -> dict[str, int]:
    """Summed counts per kind."""
    out: dict[str, int] = dict.fromkeys(KINDS, 0)
    for (kind, _, _), n in counts.items():
        out[kind] += n
    return out


__all__ = [
    "DAY",
    "H",
    "IID",
    "IID2",
    "MIX",
    "PAYLOAD_KEYS",
    "auth",
    "auth_of",
    "body",
    "dumps",
    "payload",
    "secret_for",
    "totals",
]
