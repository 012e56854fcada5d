"""Shared parts of the proof tests: a real collector, real outboxes, real processes.

* :class:`RealCollector`: the reference collector (uvicorn, in a thread of the
  test process) on a free loopback port with its own SQLite file, and what it
  stored, read straight from that file.
* :class:`Outbox`: an outbox file, rows written straight into it (backlogs), what
  was written in all, and its state after a run.
* :func:`run_worker` / :func:`kill_worker_at`: the real ``python -m worker``
  command line (and ``tests.worker.kill_at``), always with a timeout.
* :class:`Writer`: a ``tests.proof.writer`` subprocess; its JSON result.
* :func:`invariants`: every failure-model check in one place, as a list of
  problems, so that an assertion message can carry the seed and all of them.
* :func:`write_results`: the figures the README quotes (``tests/proof/.results``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector import Storage, create_app
from collector.server import Running, start_in_thread
from outbox import db, heartbeats, store
from outbox.store import Meta
from tests.helpers import child_env

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / ".results"
ON = child_env(HELIOS_TELEMETRY_ENABLED="true")

Totals = dict[tuple[str, str], int]

#: Worker options for runs that must not hang on a misbehaving receiver.
FAST_RETRY = (
    "--retry-attempts",
    "3",
    "--retry-max-wait",
    "1",
    "--connect-timeout",
    "0.5",
    "--read-timeout",
    "0.5",
)


# -- the collector --------------------------------------------------------------------


class RealCollector:
    """The reference collector on 127.0.0.1 with a SQLite file; ``stop()`` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.storage = Storage(str(path))
        self.running: Running = start_in_thread(create_app(self.storage))

    @property
    def url(self) -> str:
        return f"{self.running.url}/api/instances/heartbeat"

    @property
    def port(self) -> int:
        return int(self.running.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.running.stop()
        self.storage.close()

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        c = sqlite3.connect(self.path, timeout=30)
        try:
            return list(c.execute(sql))
        finally:
            c.close()

    def totals(self) -> Totals:
        """Counts per (kind, name) over every day, drops excluded."""
        return {
            (k, n): int(c)
            for k, n, c in self._query(
                "SELECT kind, name, sum(count) FROM aggregated_metrics "
                "WHERE kind <> 'dropped' GROUP BY kind, name"
            )
        }

    def dropped(self) -> dict[str, int]:
        return {
            n: int(c)
            for n, c in self._query(
                "SELECT name, sum(count) FROM aggregated_metrics WHERE kind = 'dropped' "
                "GROUP BY name"
            )
        }

    def instances(self) -> dict[str, dict[str, int]]:
        rows = self._query(
            "SELECT instance_id, last_sequence, heartbeats, missing, repeats FROM instances"
        )
        return {
            r[0]: {"last_sequence": r[1], "heartbeats": r[2], "missing": r[3], "repeats": r[4]}
            for r in rows
        }

    def gaps(self) -> list[tuple[str, int, int]]:
        return [
            (str(i), int(a), int(b))
            for i, a, b in self._query(
                "SELECT instance_id, first_missing, last_missing FROM sequence_gaps"
            )
        ]

    def heartbeat_ids(self) -> set[str]:
        return {str(r[0]) for r in self._query("SELECT heartbeat_id FROM instance_heartbeats")}

    def integrity(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])


# -- outboxes -------------------------------------------------------------------------


@dataclass
class OutboxState:
    """An outbox after a drain, as the invariants need it."""

    instance_id: str
    integrity: str
    pending: str | None
    unsealed_events: int
    statuses: dict[str, int]
    last_sequence: int
    sent_ids: set[str]


class Outbox:
    """A real outbox file; ``add`` writes rows straight in and remembers them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.written: Counter[tuple[str, str]] = Counter()
        conn = db.connect(path)
        conn.close()

    def connect(self) -> sqlite3.Connection:
        return db.connect(self.path, busy_timeout=30)

    def add_rows(self, rows: list[tuple[str, str, int, int]]) -> None:
        """Insert (kind, name, count, at) rows in one transaction, in this order."""
        conn = self.connect()
        try:
            with db.transaction(conn):
                conn.executemany(
                    "INSERT INTO events (kind, name, count, at) VALUES (?, ?, ?, ?)", rows
                )
        finally:
            conn.close()
        for kind, name, count, _ in rows:
            self.written[(kind, name)] += count

    def state(self) -> OutboxState:
        conn = self.connect()
        try:
            hb = heartbeats.pending(conn)
            statuses = Counter(h.status for h in heartbeats.history(conn))
            return OutboxState(
                instance_id=store.instance_id(conn),
                integrity=str(conn.execute("PRAGMA integrity_check").fetchone()[0]),
                pending=None if hb is None else hb.id,
                unsealed_events=int(
                    conn.execute(
                        "SELECT coalesce(sum(count), 0) FROM events WHERE id > ?",
                        (store.sealed_through(conn),),
                    ).fetchone()[0]
                ),
                statuses=dict(statuses),
                last_sequence=store.get_int(conn, Meta.LAST_SEQUENCE),
                sent_ids={h.id for h in heartbeats.history(conn, status="sent")},
            )
        finally:
            conn.close()


# -- processes ------------------------------------------------------------------------


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def worker_args(outbox: Path, endpoint: str, *extra: str) -> list[str]:
    return ["--once", "--db", str(outbox), "--endpoint", endpoint, *extra]


def run_worker(
    outbox: Path, endpoint: str, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m worker --once`` to the end (killed if it outlives ``timeout``)."""
    return subprocess.run(
        _python("worker", *worker_args(outbox, endpoint, *extra)),
        cwd=ROOT,
        env=ON,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_worker_at(
    step: str, outbox: Path, endpoint: str, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real command line, SIGKILLed by itself the first time it reaches ``step``."""
    return subprocess.run(
        _python("tests.worker.kill_at", step, "--", *worker_args(outbox, endpoint, *extra)),
        cwd=ROOT,
        env=ON,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(
    outbox: Path, endpoint: str, *extra: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``python -m worker --once`` started (stdout discarded); the caller reaps it."""
    return subprocess.Popen(
        _python("worker", *worker_args(outbox, endpoint, *extra)),
        cwd=ROOT,
        env=ON,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def reap(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGKILL ``proc`` if it still runs, and wait for it (used in ``finally``)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    try:
        proc.communicate(timeout=timeout)
    except (subprocess.TimeoutExpired, ValueError):
        proc.kill()


@dataclass
class Writer:
    """A ``tests.proof.writer`` process on one outbox; ``finish()`` returns its result."""

    outbox: Path
    seed: int
    folder: Path
    pause: float = 0.0
    invalid: float = 0.0
    max_seconds: float = 900.0
    proc: subprocess.Popen[bytes] | None = None
    out: Path = field(init=False)
    stop_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.out = self.folder / f"writer-{self.seed}.json"
        self.stop_file = self.folder / f"stop-{self.seed}"

    def start(self) -> Writer:
        self.proc = subprocess.Popen(
            _python(
                "tests.proof.writer",
                "--db",
                str(self.outbox),
                "--seed",
                str(self.seed),
                "--out",
                str(self.out),
                "--stop",
                str(self.stop_file),
                "--pause",
                str(self.pause),
                "--invalid",
                str(self.invalid),
                "--max-seconds",
                str(self.max_seconds),
            ),
            cwd=ROOT,
            env=ON,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return self

    def stop(self) -> None:
        self.stop_file.touch()

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Stop it, wait for it, and return its result (``AssertionError`` if it failed)."""
        assert self.proc is not None
        self.stop()
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, (
            f"writer {self.seed} exited {self.proc.returncode}: {err.decode()[-2000:]}"
        )
        result: dict[str, Any] = json.loads(self.out.read_text())
        result["stderr"] = err.decode()[-2000:]
        return result

    def kill(self) -> None:
        if self.proc is not None:
            reap(self.proc)


def tracked_totals(results: list[dict[str, Any]]) -> Totals:
    total: Counter[tuple[str, str]] = Counter()
    for r in results:
        for kind, name, count in r["tracked"]:
            total[(kind, name)] += count
    return dict(total)


# -- the invariants -------------------------------------------------------------------


def compare(expected: Totals, counted: Totals) -> tuple[int, int, list[str]]:
    """(lost, doubled, lines): what the collector is missing or has too much, per key."""
    lost = doubled = 0
    lines = []
    for key in sorted(set(expected) | set(counted)):
        e, c = expected.get(key, 0), counted.get(key, 0)
        if c < e:
            lost += e - c
        if c > e:
            doubled += c - e
        if c != e:
            lines.append(f"{key}: tracked {e}, counted {c}")
    return lost, doubled, lines


def invariants(
    collector: RealCollector,
    outboxes: list[OutboxState],
    *,
    expected: Totals,
    answers: Counter[str] | None = None,
) -> list[str]:
    """Every check of the failure model after a drain; an empty list means all hold."""
    problems = []
    counted = collector.totals()
    lost, doubled, lines = compare(expected, counted)
    if lines:
        problems.append(f"totals differ (lost {lost}, doubled {doubled}): " + "; ".join(lines[:20]))
    if collector.gaps():
        problems.append(f"sequence gaps at the collector: {collector.gaps()[:10]}")
    stored = collector.instances()
    for ob in outboxes:
        if ob.integrity != "ok":
            problems.append(f"outbox {ob.instance_id}: integrity_check says {ob.integrity}")
        if ob.pending is not None:
            problems.append(f"outbox {ob.instance_id}: heartbeat {ob.pending} still pending")
        if ob.unsealed_events:
            problems.append(f"outbox {ob.instance_id}: {ob.unsealed_events} counts never sealed")
        if ob.statuses.get("rejected"):
            problems.append(f"outbox {ob.instance_id}: {ob.statuses['rejected']} rejected")
        info = stored.get(ob.instance_id)
        if ob.last_sequence == 0:
            continue
        if info is None:
            problems.append(f"instance {ob.instance_id} never reached the collector")
            continue
        want = {
            "last_sequence": ob.last_sequence,
            "heartbeats": ob.last_sequence,
            "missing": 0,
            "repeats": 0,
        }
        if info != want:
            problems.append(f"instance {ob.instance_id}: collector has {info}, expected {want}")
        missing = ob.sent_ids - collector.heartbeat_ids()
        if missing:
            stray = sorted(missing)[:5]
            problems.append(f"instance {ob.instance_id}: sent but not stored: {stray}")
    if collector.integrity() != "ok":
        problems.append(f"collector integrity_check says {collector.integrity()}")
    if answers is not None:
        # 200 accepted/duplicate, or 503 (busy: retried); a 409 would be a conflicting id.
        bad = {a: n for a, n in answers.items() if not a.startswith("200 ") and a != "503"}
        if bad or answers.get("200 conflict"):
            problems.append(f"the collector answered {bad} (expected 200s only)")
    return problems


def write_results(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path


def seed_from_env(default: int) -> int:
    raw = os.environ.get("HELIOS_PROOF_SEED")
    return int(raw) if raw else default
