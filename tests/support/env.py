"""The environment a test and its subprocesses see: no telemetry variables of the
developer's, a free loopback port, and a record of every connection made."""

from __future__ import annotations

import os
import socket
import sys

TELEMETRY_VARIABLES = (
    "HELIOS_TELEMETRY_ENABLED",
    "HELIOS_TELEMETRY_DB",
    "HELIOS_TELEMETRY_ENDPOINT",
    "HELIOS_EDITION",
    "HELIOS_VERSION",
    "DO_NOT_TRACK",
    "XDG_DATA_HOME",
)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this one, minus telemetry variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARIABLES}
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            sys.addaudithook(_connects.hook)  # cannot be removed: it records only when asked
            _connects.installed = True
        _connects.seen = []
        _connects.recording = True
        return _connects.seen

    def __exit__(self, *exc: object) -> None:
        _connects.recording = False
