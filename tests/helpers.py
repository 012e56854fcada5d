"""Helpers for tests: a fake clock, reading totals from a file, a clean child environment."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

# 2026-11-25T10:00:00Z: a fixed instant for every test that stamps events.
T0 = 1795600800
#: The instance id outboxes made by tests get (its schedule slot is known: test_schedule.py).
INSTANCE_ID = "5d0c6a0e-2b7f-4d1c-9a3e-0f1e2d3c4b5a"

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


def raw_files_contain(path: Path, text: str) -> bool:
    """True when ``text`` is readable in the raw bytes of the outbox, its WAL or its -shm."""
    needle = text.encode()
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and needle in p.read_bytes():
            return True
    return False


class _Connects:
    """Every ``socket.connect`` this process makes while recording (an audit hook: it sees
    connections by any library to any address, without touching the network)."""

    def __init__(self) -> None:
        self.recording = False
        self.seen: list[object] = []
        self.installed = False

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if self.recording and event == "socket.connect":
            self.seen.append(args[1])


_connects = _Connects()


class recording_connects:
    """``with recording_connects() as seen: ...`` → the addresses connected to meanwhile."""

    def __enter__(self) -> list[object]:
        if not _connects.installed:
            import sys

            sys.addaudithook(_connects.hook)  # cannot be removed: it records only when asked
            _connects.installed = True
        _connects.seen = []
        _connects.recording = True
        return _connects.seen

    def __exit__(self, *exc: object) -> None:
        _connects.recording = False
