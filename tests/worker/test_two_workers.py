"""Two workers on one outbox: only one sends; the other says so and exits 2."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry
from tests.helpers import child_env
from tests.receiver import Receiver

from .conftest import ROOT, run_worker

pytestmark = pytest.mark.slow

ON = child_env(HELIOS_TELEMETRY_ENABLED="true")


def test_only_one_worker_sends(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    t = make_telemetry(clock=time.time)
    t.track_command("sync", 4)
    t.close()
    receiver.gate.clear()  # hold the first worker's POST until the second has tried
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "--once",
            "--db",
            str(db_path),
            "--endpoint",
            receiver.url,
        ],
        cwd=ROOT,
        env=ON,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.arrived.wait(30), "the first worker never sent"
        second = run_worker("--once", "--db", str(db_path), "--endpoint", receiver.url, env=ON)
        assert second.returncode == 2
        assert f"another worker (pid {first.pid} on " in second.stderr
        assert "stop it first, or start this one with --wait" in second.stderr
        receiver.gate.set()
        out, err = first.communicate(timeout=30)
    finally:
        receiver.gate.set()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert len(receiver.posts()) == 1
    assert receiver.totals() == {("command_usage", "sync"): 4}


def test_a_second_worker_takes_over_at_once_when_the_first_was_killed(
    db_path: Path, receiver: Receiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """The holder is SIGKILLed mid-POST; a second worker takes the lease at once (dead pid)."""
    t = make_telemetry(clock=time.time)
    t.track_command("sync", 2)
    t.close()
    receiver.gate.clear()
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "--once",
            "--db",
            str(db_path),
            "--endpoint",
            receiver.url,
        ],
        cwd=ROOT,
        env=ON,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert receiver.arrived.wait(30)
        first.kill()
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    receiver.gate.set()
    second = run_worker("--once", "--db", str(db_path), "--endpoint", receiver.url, env=ON)
    assert second.returncode == 0, second.stderr
    assert receiver.totals() == {("command_usage", "sync"): 2}  # exact, whatever the first did
