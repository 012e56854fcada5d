"""Real processes for tests, always with a timeout and never left running.

* :func:`run_python`: ``python -c CODE`` to the end (it must succeed);
* :func:`run_worker`: ``python -m worker ARGS`` (or another module) to the end;
  :func:`kill_worker_at`: the same command line, SIGKILLed by itself at a step
  (``tests.worker.kill_at``); :func:`once`: the arguments of a ``--once`` run.
* :class:`Proc`: a process in the background, its output in a log file, stopped
  (SIGTERM, then SIGKILL) when the ``with`` block ends whatever happened.
* :func:`worker_env`: the environment of a worker that is on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.env import child_env

ROOT = Path(__file__).resolve().parents[2]


def worker_env(db: Path | None = None, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """A subprocess environment with telemetry on (``child_env``: nothing of the
    developer's), and the outbox and endpoint when given."""
    env = child_env(HELIOS_TELEMETRY_ENABLED="true")
    if db is not None:
        env["HELIOS_TELEMETRY_DB"] = str(db)
    if endpoint is not None:
        env["HELIOS_TELEMETRY_ENDPOINT"] = endpoint
    env.update(extra)
    return env


def once(db: Path, endpoint: str, *extra: str) -> tuple[str, ...]:
    """The arguments of ``outbox-worker --once`` on ``db`` towards ``endpoint``."""
    return ("--once", "--db", str(db), "--endpoint", endpoint, *extra)


def run_python(
    code: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    input: str | None = None,  # noqa: A002  # subprocess's name
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a fresh interpreter (``env`` default: :func:`child_env`);
    ``AssertionError`` with its stderr unless it exits 0."""
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=dict(env) if env is not None else child_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"python -c {code!r} exited {r.returncode}: {r.stderr[-2000:]}"
    return r


def run_worker(
    *args: str,
    env: Mapping[str, str] | None = None,
    module: str = "worker",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m worker ARGS`` to the end (``env`` default: :func:`child_env`, telemetry
    variables unset); killed, and ``TimeoutExpired`` raised, if it outlives ``timeout``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=dict(env) if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_worker_at(
    step: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real command line, SIGKILLed by itself the first time it reaches ``step``
    (``STEP@N``: the N-th time; see ``worker.pacing.STEPS``)."""
    return run_worker(step, "--", *args, env=env, module="tests.worker.kill_at", timeout=timeout)


class Proc:
    """A background subprocess (stdout and stderr into ``log``); use it as a context: on
    the way out it is stopped (:meth:`stop`) whatever happened."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.p = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdout=self._out, stderr=subprocess.STDOUT
        )

    @classmethod
    def worker(cls, *args: str, env: Mapping[str, str], log: Path) -> Proc:
        """``python -m worker ARGS`` in the background."""
        return cls([sys.executable, "-m", "worker", *args], env, log)

    @property
    def pid(self) -> int:
        return self.p.pid

    @property
    def returncode(self) -> int | None:
        return self.p.poll()

    def text(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Wait for it to exit; ``TimeoutExpired`` after ``timeout`` seconds."""
        return int(self.p.wait(timeout))

    def kill(self) -> int:
        """SIGKILL (if it still runs) and reap it; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(30)
        self._out.close()
        return int(self.p.returncode)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.p.pid, signal.SIGCONT)
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._out.close()
        return int(self.p.returncode)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
