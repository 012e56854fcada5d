"""Fixtures for the worker tests: a real receiver, in-process workers on a fake clock,
and the real command line in a subprocess."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FakeClock, child_env
from tests.receiver import Receiver
from worker.loop import Config, Worker
from worker.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
VERSION = "1.4.2"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def make_config(db_path: Path, **overrides: Any) -> Config:
    base: dict[str, Any] = {
        "db_path": db_path,
        "endpoint": "http://127.0.0.1:9/api/instances/heartbeat",
        "edition": "community",
        "version": VERSION,
        "env_enabled": "true",
        "do_not_track": False,
        "retry": RetryPolicy(attempts=3, max_wait=8.0),
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "chunk_pause": 0.0,
    }
    base.update(overrides)
    return Config(**base)


class Sleeps(list[float]):
    """Records the waits between delivery attempts instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_worker(db_path: Path, clock: FakeClock, sleeps: Sleeps) -> Iterator[Callable[..., Worker]]:
    """Open in-process workers on the test's outbox and fake clock; closed at the end."""
    made: list[Worker] = []

    def make(*, opened: bool = True, **kwargs: Any) -> Worker:
        parts = {k: kwargs.pop(k) for k in ("transport", "hook", "wait") if k in kwargs}
        w = Worker(
            make_config(db_path, **kwargs),
            clock=clock,
            sleep=sleeps,
            rng=random.Random(7),
            **parts,
        )
        if opened:
            w.open()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def run_worker(
    *args: str, env: dict[str, str] | None = None, module: str = "worker", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (``python -m worker ...``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drive(worker: Worker, clock: FakeClock, until: float) -> list[Any]:
    """Run cycles at the times the loop would wake, up to ``until``; returns the summaries."""
    summaries = []
    while True:
        s = worker.tick(clock.now)
        summaries.append(s)
        wake = worker.next_wake(clock.now, s)
        if wake > until:
            clock.now = until
            return summaries
        clock.now = wake
