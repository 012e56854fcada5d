"""Shared parts of the proof tests for the proxy, outage, storage-fault and hostile-input
suites: the real collector with a record of every answer it gave, the worker as a
real subprocess, and the figures each test writes for the README's "Guarantees".

Import explicitly: ``from tests.proof.support import ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector import Storage, create_app
from collector.server import Running, start_in_thread
from tests.helpers import FakeClock, child_env
from tests.proof.harness import write_results

ROOT = Path(__file__).resolve().parents[2]
INGEST = "/api/instances/heartbeat"

# -- figures for the README -------------------------------------------------------------


def record(test: str, **figures: Any) -> dict[str, Any]:
    """Write ``figures`` to ``tests/proof/.results/<test>.json`` and print one line."""
    write_results(test, figures)
    print(f"\n[proof] {test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return figures


# -- PII shapes: nothing of the kind may ever leave in a payload --------------------------

PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[^\s@\"]+@[^\s@\"]+\.[a-z]{2,}", re.I),
    "ipv4": re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])"),
    "ipv6": re.compile(r"(?<![0-9a-f:])(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{0,4}(?![0-9a-f:])", re.I),
    "uuid": re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I),
    "long_hex": re.compile(r"(?<![0-9a-z])(?=[a-f]*[0-9])[0-9a-f]{12,}(?![0-9a-z])", re.I),
    "hostname": re.compile(
        r"(?<![a-z0-9_.-])(?:[a-z0-9-]+\.)+(?:com|net|org|io|dev|app|cloud|local|localdomain|"
        r"internal|lan|home|corp|example|test|arpa|edu|gov|info|biz|co|uk|de|fr|nl|eu|us)$",
        re.I,
    ),
}


def pii_in_names(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (pattern, name) where a name of the payload looks like personal data.

    A hostname is a name ending in a top-level domain (``db01.example.com``); words
    that happen to be one in the middle of a dotted name (``a.nl.list``, from the
    relayed path ``/a/nl``) are path words, not a host.

    Only names are searched (and drop reasons): the payload's own ids, times and
    version are fixed fields of the contract, not user input.
    """
    names: list[str] = []
    for key in ("api_usage", "command_usage", "ui_actions"):
        names += list(payload.get(key, {}))
    for day in payload.get("days", {}).values():
        for key in ("api_usage", "command_usage", "ui_actions"):
            names += list(day.get(key, {}))
    names += list(payload.get("dropped", {}))
    return [(kind, n) for n in names for kind, p in PII_PATTERNS.items() if p.search(n)]


# -- the real collector, with a record of its answers -------------------------------------


@dataclass
class Answers:
    """Every ingest answer the collector gave: status and, for 200s, accepted/duplicate."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[tuple[str, int, str]] = field(default_factory=list)  # (id, http, status)

    def add(self, hid: str, http: int, status: str) -> None:
        with self.lock:
            self.log.append((hid, http, status))

    def by_id(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for hid, http, status in self.log:
            out.setdefault(hid, []).append(status or str(http))
        return out

    def statuses(self) -> Counter[str]:
        return Counter(status or str(http) for _, http, status in self.log)


class Recording:
    """ASGI middleware around the collector: records each ingest answer (by the
    heartbeat's ``Idempotency-Key``). ``slow_after_store`` holds the answer back
    for that many seconds *after* the collector stored the heartbeat (what a proxy's
    504 looks like from the sender's side)."""

    def __init__(self, app: ASGIApp, answers: Answers) -> None:
        self.app = app
        self.answers = answers
        self.slow_after_store = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != INGEST:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        hid = headers.get(b"idempotency-key", b"").decode("latin-1")
        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, keep)
        status = int(held[0]["status"])
        body = b"".join(m.get("body", b"") for m in held[1:])
        try:
            what = str(json.loads(body).get("status", "")) if status == 200 else ""
        except ValueError:
            what = ""
        self.answers.add(hid, status, what)
        if self.slow_after_store:
            import anyio

            await anyio.sleep(self.slow_after_store)
        for m in held:
            await send(m)


class LiveCollector:
    """The reference collector on 127.0.0.1 that can go down and come back on its port."""

    def __init__(self, db: Path, clock: Callable[[], float] | None = None) -> None:
        self.storage = Storage(db)
        self.clock = clock or FakeClock()
        self.answers = Answers()
        self.port = 0
        self.running: Running | None = None
        self.app: Recording | None = None

    def start(self) -> LiveCollector:
        app = Recording(create_app(self.storage, clock=self.clock), self.answers)
        if self.app is not None:
            app.slow_after_store = self.app.slow_after_store
        self.app = app
        self.running = start_in_thread(app, port=self.port)
        self.port = int(self.running.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None

    def close(self) -> None:
        self.stop()
        self.storage.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INGEST}"

    def totals(self) -> dict[tuple[str, str], int]:
        """Counts stored per (kind, name), drops included as ("dropped", reason)."""
        rows = self.storage.read(
            lambda c: c.exec_driver_sql(
                "SELECT kind, name, sum(count) FROM aggregated_metrics GROUP BY kind, name"
            ).all()
        )
        return {(str(k), str(n)): int(s) for k, n, s in rows}

    def day_totals(self) -> dict[tuple[str, str, str], int]:
        rows = self.storage.read(
            lambda c: c.exec_driver_sql(
                "SELECT day, kind, name, count FROM aggregated_metrics"
            ).all()
        )
        return {(str(d), str(k), str(n)): int(s) for d, k, n, s in rows}

    def heartbeats(self) -> list[dict[str, Any]]:
        rows = self.storage.read(
            lambda c: c.exec_driver_sql(
                "SELECT body FROM instance_heartbeats ORDER BY sequence"
            ).all()
        )
        return [json.loads(bytes(r[0])) for r in rows]


def usage(t: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Totals without the drop counters."""
    return {k: v for k, v in t.items() if k[0] != "dropped"}


# -- the worker as a real process ---------------------------------------------------------


def worker_env(db: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = child_env(
        HELIOS_TELEMETRY_ENABLED="true",
        HELIOS_TELEMETRY_DB=str(db),
        HELIOS_TELEMETRY_ENDPOINT=endpoint,
        HELIOS_VERSION="1.4.2",
    )
    env.update(extra)
    return env


def run_worker(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m worker ARGS`` to completion (killed after ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Proc:
    """A background subprocess that is always killed in the end (use as a context)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.p = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def text(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

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


# -- reading an outbox directly ---------------------------------------------------------------


def outbox_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    c = sqlite3.connect(db, timeout=10)
    try:
        return [tuple(r) for r in c.execute(sql, args)]
    finally:
        c.close()
