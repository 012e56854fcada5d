"""When the next heartbeat is due: a pure function of the clock and what the outbox remembers.

The rule (DESIGN.md section 5):

* The first heartbeat is due :data:`FIRST_DELAY` (5 minutes) after the worker starts.
* After that, one per interval: :data:`INTERVALS` (hourly for ``licensed``, daily for
  ``community``), measured from the last seal stored in the outbox (meta
  ``last_seal_at``), so a restart neither skips a heartbeat nor sends one early.
* Each instance has its own slot: the interval grid is shifted by a stable offset
  derived from the instance id (``phase``), so thousands of instances do not all
  call at the top of the hour, and each one calls at about the same minute every
  time, as egress monitors prefer. Each slot then moves by up to ±10 % of the
  interval (``jitter``), seeded from the instance id and the slot number: no
  randomness at run time, so this module stays pure and tests need no seed.

Slot ``k`` of an instance is at ``k * interval + phase + jitter(k)``; consecutive
slots are 0.8 to 1.2 intervals apart. The next seal is due at the first slot that
lies more than :data:`MIN_GAP` (0.8) intervals after the last seal, and never earlier
than 5 minutes after the start. A seal made late, up to 10 % of the interval after a
slot (a restarted worker waits 5 minutes; a long maintenance step), counts as made on
that slot, so a restart never skips one. So, the bounds the help text states
(``outbox.disclosure.SCHEDULE``):

* on the slot, two heartbeats are 0.8 to 1.2 intervals apart (48 to 72 minutes
  licensed, 19.2 to 28.8 hours community), and never less than 0.7 after a late one;
* the first goes 5 minutes after the worker starts, the second 0.7 to 2 intervals
  later, on the slot.

Clock going backwards: a last seal (or a start) stamped "in the future" is taken
as now, so the next heartbeat is due within 0.8 to 2 intervals instead of being
pushed back by however far the clock jumped.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

from outbox import health

FIRST_DELAY: Final = 300.0
#: Seconds between heartbeats per edition: the same table :mod:`outbox.health` uses.
INTERVALS: Final = health.INTERVALS
JITTER: Final = 0.10
#: The shortest gap between two heartbeats, in intervals: two slots are never closer.
MIN_GAP: Final = 1 - 2 * JITTER


def interval_for(edition: str) -> float:
    """Seconds between heartbeats for ``edition`` (unknown editions get the daily interval)."""
    return INTERVALS.get(edition, INTERVALS["community"])


def _unit(*parts: object) -> float:
    """A number in [0, 1) derived from ``parts`` (stable across runs and machines)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def phase(instance_id: str, interval: float) -> float:
    """The instance's stable offset into the interval, in [0, interval)."""
    return _unit("phase", instance_id) * interval


def jitter(instance_id: str, interval: float, k: int) -> float:
    """How far slot ``k`` moves from its place on the grid: within ±10 % of the interval."""
    return (2.0 * _unit("jitter", instance_id, int(interval), k) - 1.0) * JITTER * interval


def slot(instance_id: str, interval: float, k: int) -> float:
    """The unix time of slot ``k`` of this instance."""
    return k * interval + phase(instance_id, interval) + jitter(instance_id, interval, k)


def slot_at_or_before(t: float, instance_id: str, interval: float) -> float:
    """The last slot of this instance at or before ``t``."""
    k = math.floor((t - phase(instance_id, interval)) / interval) + 2
    while (s := slot(instance_id, interval, k)) > t:
        k -= 1
    return s


def next_slot_after(t: float, instance_id: str, interval: float) -> float:
    """The first slot of this instance strictly after ``t``."""
    # Slot k lies within ±10 % of k * interval + phase, so start two slots early.
    k = math.floor((t - phase(instance_id, interval)) / interval) - 1
    while (s := slot(instance_id, interval, k)) <= t:
        k += 1
    return s


def next_due(
    *,
    now: float,
    started_at: float,
    last_seal_at: float | None,
    edition: str,
    instance_id: str,
) -> float:
    """The unix time at which the next heartbeat should be sealed.

    :param now: the current time (unix seconds).
    :param started_at: when this worker process started.
    :param last_seal_at: the last seal stored in the outbox, or ``None`` if never.
    :param edition: ``licensed`` (hourly) or ``community`` (daily).
    :param instance_id: the outbox's instance id (spreads instances over the interval).
    """
    interval = interval_for(edition)
    first = min(started_at, now) + FIRST_DELAY
    if last_seal_at is None:
        return first
    last = min(last_seal_at, now)
    on_slot = slot_at_or_before(last, instance_id, interval)
    anchor = on_slot if last - on_slot <= JITTER * interval else last
    return max(first, next_slot_after(anchor + MIN_GAP * interval, instance_id, interval))
