"""Threads, processes, fork and SIGKILL: exact totals, nothing raised into a caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from outbox import Telemetry
from tests.support.env import child_env
from tests.support.totals import totals

ROOT = Path(__file__).resolve().parents[2]


def run_proc(*args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.core.procs", *args],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_eight_threads_times_five_thousand_calls(db_path: Path) -> None:
    t = Telemetry(db_path=db_path, enabled=True, environ={})
    errors: list[BaseException] = []
    refused = [0] * 8

    def work(i: int) -> None:
        try:
            for _ in range(5000):
                if not t.track_api_call(f"thread_{i}.work"):
                    refused[i] += 1
        except BaseException as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and refused == [0] * 8
    assert totals(db_path) == {("api", f"thread_{i}.work"): 5000 for i in range(8)}
    t.close()


@pytest.mark.slow
def test_four_processes_times_five_thousand_calls(db_path: Path) -> None:
    assert Telemetry(db_path=db_path, enabled=True, environ={}).instance_id  # creates the file
    procs = [
        run_proc("track", str(db_path), "5000", kind, name)
        for kind, name in [
            ("api", "users.list"),
            ("api", "users.get"),
            ("command", "sync"),
            ("ui", "bulk_edit"),
        ]
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        results.append(json.loads(out))
    assert [r["refused"] for r in results] == [0, 0, 0, 0], results
    assert totals(db_path) == {
        ("api", "users.list"): 5000,
        ("api", "users.get"): 5000,
        ("command", "sync"): 5000,
        ("ui", "bulk_edit"): 5000,
    }


@pytest.mark.slow
def test_processes_creating_the_outbox_at_once_agree_on_one_instance_id(tmp_path: Path) -> None:
    path = tmp_path / "new" / "telemetry.db"
    start_at = time.time() + 1.5  # every process is up and spinning by then
    procs = [run_proc("instance_id", str(path), str(start_at)) for _ in range(6)]
    ids = set()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        ids.add(out.strip())
    assert len(ids) == 1
    assert Telemetry(db_path=path, enabled=True, environ={}).instance_id in ids


@pytest.mark.slow
def test_fork_after_tracking_parent_and_child_keep_tracking(db_path: Path) -> None:
    t = Telemetry(db_path=db_path, enabled=True, environ={})
    for _ in range(100):
        assert t.track_api_call("users.list")
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            for _ in range(1000):
                if not t.track_command("child.work"):
                    code = 3
        except BaseException:
            code = 4
        os._exit(code)
    for _ in range(1000):
        assert t.track_command("parent.work")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert t.track_api_call("users.list")
    assert totals(db_path) == {
        ("api", "users.list"): 101,
        ("command", "child.work"): 1000,
        ("command", "parent.work"): 1000,
    }
    t.close()


@pytest.mark.slow
def test_an_event_is_durable_once_the_call_returned_even_under_sigkill(db_path: Path) -> None:
    for round_ in range(1, 4):
        with run_proc("ack_then_wait", str(db_path)) as p:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "tracked"
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        assert p.returncode == -signal.SIGKILL
        assert totals(db_path) == {("command", "sync"): round_}
