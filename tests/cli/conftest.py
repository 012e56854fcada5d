"""Fixtures for the command-line tests: a runner bound to the test's outbox and
fake clock, and a builder that fills real outbox files through the library."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from outbox import Telemetry, db, heartbeats, store
from outbox.cli import CliContext, cli
from outbox.heartbeats import Heartbeat
from outbox.store import Meta
from tests.support.clock import FakeClock

#: Fixed heartbeat ids, so that outputs can be compared exactly.
HB = [f"{n:08x}-8c1d-4e4f-9a51-2d3c4b5a6f70" for n in range(0x1A2B3C01, 0x1A2B3C10)]
INSTANCE = "5d0c6b0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


class Invoke:
    """``run("status", "--json", env={...})``: the ``outbox`` command in-process."""

    def __init__(self, db_path: Path, clock: FakeClock) -> None:
        self.db_path = db_path
        self.clock = clock
        self.obj = CliContext(clock=clock, busy_timeout=0.2)

    def __call__(
        self,
        *args: object,
        env: dict[str, str | None] | None = None,
        input: str | None = None,
        db_path: Path | None = None,
    ) -> Result:
        environ = {"HELIOS_TELEMETRY_DB": str(db_path or self.db_path), **(env or {})}
        # catch_exceptions=False: anything but a clean exit is a traceback, and fails the test.
        return CliRunner().invoke(
            cli,
            [str(a) for a in args],
            env=environ,
            input=input,
            obj=self.obj,
            catch_exceptions=False,
        )


@pytest.fixture
def run(db_path: Path, clock: FakeClock) -> Invoke:
    return Invoke(db_path, clock)


class Outbox:
    """Builds real outbox content through the library (track calls, seals, settles)."""

    def __init__(self, path: Path, clock: FakeClock, make: Callable[..., Telemetry]) -> None:
        self.path = path
        self.clock = clock
        self.telemetry = make(new_id=lambda: INSTANCE)

    @contextlib.contextmanager
    def conn(self) -> Iterator[sqlite3.Connection]:
        c = db.connect(self.path)
        try:
            yield c
        finally:
            c.close()

    def track(self, kind: Any, name: str, count: int = 1) -> None:
        assert self.telemetry.track(kind, name, count)

    def track_many(self, events: Sequence[tuple[str, str, int]]) -> None:
        for kind, name, count in events:
            self.track(kind, name, count)

    def instance(self) -> str:
        return self.telemetry.instance_id

    def seal(self, heartbeat_id: str, *, local: bool = False) -> Heartbeat:
        with self.conn() as c:
            h = heartbeats.commit_seal(
                c,
                heartbeats.plan_seal(c),
                heartbeat_id=heartbeat_id,
                now=int(self.clock()),
                version="1.4.2",
                edition="community",
                local=local,
            )
        assert h is not None
        return h

    def attempt(self, heartbeat_id: str, error: str) -> None:
        with self.conn() as c:
            heartbeats.record_attempt(c, heartbeat_id, now=int(self.clock()), error=error)

    def settle(
        self,
        heartbeat_id: str,
        status: Any = "sent",
        *,
        attempts: int = 1,
        receipt: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self.conn() as c:
            assert heartbeats.settle(
                c,
                heartbeat_id,
                status=status,
                now=int(self.clock()),
                attempts=attempts,
                receipt=receipt,
                error=error,
            )

    def send(self, heartbeat_id: str) -> Heartbeat:
        """Seal and mark sent, with the receipt a receiver gives."""
        h = self.seal(heartbeat_id)
        self.clock.advance(60)
        self.settle(
            heartbeat_id, receipt={"status": "accepted", "payload_sha256": h.payload_sha256}
        )
        return h

    def set_meta(self, key: str, value: object) -> None:
        with self.conn() as c:
            store.put(c, Meta(key), value)

    def lease(self, pid: int, *, acquired_at: int, expires_at: int) -> None:
        with self.conn() as c:
            c.execute(
                "INSERT OR REPLACE INTO worker_lease (id, owner, pid, acquired_at, expires_at) "
                "VALUES (1, ?, ?, ?, ?)",
                (f"helios-1:{pid}:t0k3n", pid, acquired_at, expires_at),
            )

    def heartbeat_statuses(self) -> list[tuple[int, str]]:
        with self.conn() as c:
            return [(h.sequence, h.status) for h in heartbeats.history(c)]


@pytest.fixture
def outbox(db_path: Path, clock: FakeClock, make_telemetry: Callable[..., Telemetry]) -> Outbox:
    return Outbox(db_path, clock, make_telemetry)


@pytest.fixture
def history(outbox: Outbox, clock: FakeClock) -> Outbox:
    """Sequences 1-5: sent, sent, rejected, local, and one pending (see ``scenes.history``)."""
    from tests.cli import scenes  # scenes imports this module

    return scenes.history(outbox, clock)
