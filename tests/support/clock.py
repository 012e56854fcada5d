"""Time for tests: one fixed instant and a clock that moves only when told."""

from __future__ import annotations

#: 2026-11-25T10:00:00Z: a fixed instant for every test that stamps events.
T0 = 1795600800


class FakeClock:
    """Unix seconds that only move when the test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
