"""Fixtures for the worker tests: a real receiver, in-process workers on a fake clock
(the real command line in a subprocess is ``tests.support.processes.run_worker``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outbox.config import Config
from tests.support.clock import FakeClock
from tests.support.outboxes import INSTANCE_ID
from tests.support.receiver import Receiver
from worker.loop import Worker
from worker.options import Options
from worker.retry import RetryPolicy

VERSION = "1.4.2"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


_OPTIONS = {f for f in Options.__dataclass_fields__}


def make_config(db_path: Path, **overrides: Any) -> tuple[Config, Options]:
    """A worker's environment and options for tests: on by its environment, a loopback
    endpoint, short timeouts, no pause between maintenance chunks. ``env`` replaces the
    environment's telemetry variables (``{"HELIOS_TELEMETRY_ENABLED": "false"}``)."""
    env = {"HELIOS_TELEMETRY_ENABLED": "true", "HELIOS_VERSION": VERSION}
    env.update(overrides.pop("env", {}))
    if "env_enabled" in overrides:  # shorthand for HELIOS_TELEMETRY_ENABLED (None: unset)
        enabled = overrides.pop("env_enabled")
        if enabled is None:
            del env["HELIOS_TELEMETRY_ENABLED"]
        else:
            env["HELIOS_TELEMETRY_ENABLED"] = enabled
    if overrides.pop("do_not_track", False):
        env["DO_NOT_TRACK"] = "1"
    endpoint = overrides.pop("endpoint", "http://127.0.0.1:9/api/instances/heartbeat")
    if "edition" in overrides:
        env["HELIOS_EDITION"] = overrides.pop("edition")
    config = Config.from_env(env, db_path=db_path, endpoint=endpoint)
    options: dict[str, Any] = {
        "retry": RetryPolicy(attempts=3, max_wait=8.0),
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "chunk_pause": 0.0,
    }
    unknown = set(overrides) - _OPTIONS
    assert not unknown, f"not a worker option: {unknown}"
    options.update(overrides)
    return config, Options(**options)


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
        parts = {k: kwargs.pop(k) for k in ("transport", "hook", "wait", "sleep") if k in kwargs}
        parts.setdefault("sleep", sleeps)
        w = Worker(
            *make_config(db_path, **kwargs),
            clock=clock,
            rng=random.Random(7),
            new_instance_id=lambda: INSTANCE_ID,  # its schedule slot is the same every run
            **parts,
        )
        if opened:
            w.open()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


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
