"""Two workers on one outbox: only one sends; the other says so and exits 2."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry
from tests.support.processes import Proc, once, run_worker, worker_env
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

ON = worker_env()


def test_only_one_worker_sends(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    t = make_telemetry(clock=time.time)
    t.track_command("sync", 4)
    t.close()
    receiver.gate.clear()  # hold the first worker's POST until the second has tried
    with Proc.worker(*once(db_path, receiver.url), env=ON, log=db_path.with_name("w.log")) as first:
        try:
            assert receiver.arrived.wait(30), "the first worker never sent"
            second = run_worker(*once(db_path, receiver.url), env=ON)
            assert second.returncode == 2
            assert f"another worker (pid {first.pid} on " in second.stderr
            assert "stop it first, or start this one with --wait" in second.stderr
        finally:
            receiver.gate.set()
        assert first.wait(30) == 0, first.text()
    assert len(receiver.posts()) == 1
    assert receiver.totals() == {("command", "sync"): 4}


def test_a_second_worker_takes_over_at_once_when_the_first_was_killed(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """The holder is SIGKILLed mid-POST; a second worker takes the lease at once (dead pid)."""
    t = make_telemetry(clock=time.time)
    t.track_command("sync", 2)
    t.close()
    receiver.gate.clear()
    with Proc.worker(*once(db_path, receiver.url), env=ON, log=db_path.with_name("w.log")) as first:
        assert receiver.arrived.wait(30)
        first.kill()
    receiver.gate.set()
    second = run_worker(*once(db_path, receiver.url), env=ON)
    assert second.returncode == 0, second.stderr
    assert receiver.totals() == {("command", "sync"): 2}  # exact, whatever the first did
