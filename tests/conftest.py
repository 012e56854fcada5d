"""Fixtures shared by every test: a clean environment, real outbox files, a fake clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outbox import Telemetry, db
from tests.helpers import INSTANCE_ID, TELEMETRY_VARIABLES, FakeClock


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's telemetry variables or writes to their home."""
    for name in TELEMETRY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's outbox lives (not created yet)."""
    return tmp_path / "outbox" / "telemetry.db"


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a new outbox file with the schema applied."""
    c = db.connect(db_path)
    yield c
    c.close()


@pytest.fixture
def make_telemetry(db_path: Path, clock: FakeClock) -> Iterator[Callable[..., Telemetry]]:
    """Build ``Telemetry`` objects on the test's outbox; closed at the end."""
    made: list[Telemetry] = []

    def make(**kwargs: object) -> Telemetry:
        kwargs.setdefault("db_path", db_path)
        kwargs.setdefault("enabled", True)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("environ", {})
        # A fixed instance id: its schedule slot (worker/schedule.py) is the same every run.
        kwargs.setdefault("new_id", lambda: INSTANCE_ID)
        t = Telemetry(**kwargs)  # type: ignore[arg-type]
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()
