"""Helpers for tests: a fake clock, reading totals from a file, a clean child environment."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

# 2026-11-25T10:00:00Z: a fixed instant for every test that stamps events.
T0 = 1795600800

TELEMETRY_VARIABLES = (
    "HELIOS_TELEMETRY_ENABLED",
    "HELIOS_TELEMETRY_DB",
    "HELIOS_TELEMETRY_ENDPOINT",
    "HELIOS_EDITION",
    "HELIOS_VERSION",
    "DO_NOT_TRACK",
    "XDG_DATA_HOME",
)


class FakeClock:
    """Unix seconds that only move when the test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def totals(path: Path | str) -> dict[tuple[str, str], int]:
    """Every stored count per (kind, name), read straight from the file."""
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this one, minus telemetry variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARIABLES}
    env.update(extra)
    return env
