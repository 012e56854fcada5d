"""CountWriter: counts handed over by requests are stored off the request path, in batches,
exactly, and drained at shutdown and in a forked child."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry
from outbox.web.writer import CountWriter
from tests.web.conftest import drops, stored


class Gated(Telemetry):
    """A real Telemetry whose first track call waits for the test (so that the next
    requests pile up), and which records every call it gets."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[str, int]] = []

    def track_api_call(self, name: str, count: int = 1) -> bool:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append((name, count))
        return super().track_api_call(name, count)


def test_requests_that_arrive_while_it_stores_are_stored_together(
    db_path: Path,
) -> None:
    t = Gated(db_path=db_path, enabled=True, environ={})
    writer = CountWriter(lambda: t, source="test")
    writer.put("users.list")
    assert t.entered.wait(10)  # the thread is storing the first one
    for _ in range(999):
        writer.put("users.list")
    for _ in range(50):
        writer.put("groups.get")
    for _ in range(3):
        writer.put(None)  # relayed calls that matched nothing declared
    t.gate.set()
    assert writer.drain()
    assert t.calls == [("users.list", 1), ("users.list", 999), ("groups.get", 50)]
    assert stored(db_path) == {("api", "users.list"): 1000, ("api", "groups.get"): 50}
    assert drops(db_path) == {"unknown_name": 3}
    t.close()


def test_drain_waits_for_everything_handed_over(on: Telemetry, db_path: Path) -> None:
    writer = CountWriter(lambda: on, source="test")
    assert writer.drain()  # nothing yet, no thread: at once
    for i in range(2000):
        writer.put(f"name_{i % 7}.list")
    assert writer.drain()
    assert sum(stored(db_path).values()) == 2000


def test_a_raising_telemetry_is_said_once_and_the_thread_goes_on(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Raising(Telemetry):
        """Raises on its first two track calls, then stores."""

        raised = 0

        def track_api_call(self, name: str, count: int = 1) -> bool:
            if self.raised < 2:
                self.raised += 1
                raise RuntimeError("boom")
            return super().track_api_call(name, count)

    t = Raising(db_path=db_path, enabled=True, environ={})
    writer = CountWriter(lambda: t, source="src")
    for _ in range(3):
        writer.put("users.list")
        assert writer.drain()
    said = [r for r in caplog.records if r.getMessage() == "telemetry: src could not store counts"]
    assert len(said) == 1
    # The thread went on after the failures: what is handed over next is stored, exactly.
    for _ in range(5):
        writer.put("groups.get")
    assert writer.drain()
    assert stored(db_path) == {("api", "users.list"): 1, ("api", "groups.get"): 5}
    assert t.raised == 2
    t.close()


def test_a_forked_child_stores_through_its_own_thread(
    make_telemetry: Callable[..., Telemetry], db_path: Path
) -> None:
    t = make_telemetry(enabled=True)
    writer = CountWriter(lambda: t, source="test")
    writer.put("parent.list")
    assert writer.drain()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            for _ in range(5):
                writer.put("child.list")
            os._exit(0 if writer.drain() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.put("parent.list")
    assert writer.drain()
    assert stored(db_path) == {("api", "parent.list"): 2, ("api", "child.list"): 5}


def test_while_off_nothing_is_written(off: Telemetry, db_path: Path) -> None:
    writer = CountWriter(lambda: off, source="test")
    for _ in range(10):
        writer.put("users.list")
    assert writer.drain()
    assert not db_path.exists()
