"""Fixtures shared by every test: a clean environment, real outbox files, a fake clock.

Under CI (``CI`` set: ``tests.support.ci``) nothing real may be skipped: a
``HELIOS_SKIP_*`` variable stops the run before it starts, and every skip is reported
as a failure with its reason. Outside CI a skip is listed with its reason (``-ra``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from outbox import Telemetry, db
from tests.support.ci import INSTALL_COMMAND, in_ci, skip_variables
from tests.support.clock import FakeClock
from tests.support.env import TELEMETRY_VARIABLES
from tests.support.outboxes import INSTANCE_ID


def pytest_configure(config: pytest.Config) -> None:
    if in_ci() and skip_variables():
        raise pytest.UsageError(
            f"CI is set, and so is {', '.join(skip_variables())}: under CI every real part "
            f"runs. Unset it; install what is missing with {INSTALL_COMMAND}."
        )


def _under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """A skip under CI becomes a failure that keeps the skip's reason."""
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI, where every real part must run: {reason.removeprefix('Skipped: ')}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _under_ci(report)
    return report


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
