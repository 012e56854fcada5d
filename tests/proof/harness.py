"""What only the proof suite needs, on top of ``tests.support`` (the collector, outboxes,
processes, the fault proxy):

* :class:`Writer`: a ``tests.proof.writer`` process tracking a known mix; its JSON result
  (what every track call returned), and what that means for the collector
  (:func:`tracked_totals`, :func:`expected_drops`);
* :func:`invariants`: every failure-model check after a drain in one place, as a list of
  problems, so that an assertion message can carry the seed and all of them;
* :func:`in_process_worker`: the worker in the test's process on a fake clock, for the
  proofs that act between two of its steps;
* :func:`pii_in_names`: personal data in a payload's names;
* :func:`record`: the figures the README quotes (``tests/proof/.results/<test>.json``).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outbox.config import Config
from tests.support.clock import FakeClock
from tests.support.collector import Collector
from tests.support.outboxes import OutboxState
from tests.support.processes import Proc, worker_env
from tests.support.totals import Totals
from worker.loop import Worker
from worker.options import Options
from worker.pacing import Hook, no_hook
from worker.retry import RetryPolicy

RESULTS = Path(__file__).resolve().parent / ".results"

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


def seed_from_env(default: int) -> int:
    raw = os.environ.get("HELIOS_PROOF_SEED")
    return int(raw) if raw else default


def record(test: str, **figures: Any) -> dict[str, Any]:
    """Write ``figures`` to ``tests/proof/.results/<test>.json`` and print one line."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{test}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n[proof] {test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return figures


# -- the worker in this process ---------------------------------------------------------------


def in_process_worker(
    db: Path,
    endpoint: str,
    *,
    clock: FakeClock,
    max_rows: int = 50_000,
    seed: int = 1,
    wait: Callable[[float], bool] | None = None,
    hook: Hook = no_hook,
) -> Worker:
    """An opened worker on ``db`` (on by its environment), on the fake ``clock``: waits
    between delivery attempts are skipped, maintenance does not pause between chunks, and
    the loop wakes at least hourly (not every 30 s just to checkpoint)."""
    environ = {"HELIOS_TELEMETRY_ENABLED": "true", "HELIOS_VERSION": "1.4.2"}
    options = Options(
        retry=RetryPolicy(attempts=3, max_wait=8.0),
        connect_timeout=2.0,
        read_timeout=10.0,
        max_rows=max_rows,
        chunk_pause=0.0,
        checkpoint_every=3600.0,
    )
    w = Worker(
        Config.from_env(environ, db_path=db, endpoint=endpoint),
        options,
        clock=clock,
        sleep=lambda _: None,
        wait=wait,
        hook=hook,
        rng=random.Random(seed),
    )
    w.open()
    return w


# -- writers ------------------------------------------------------------------------------------


@dataclass
class Writer:
    """A ``tests.proof.writer`` process on one outbox; ``finish()`` returns its result."""

    outbox: Path
    seed: int
    folder: Path
    pause: float = 0.0
    invalid: float = 0.0
    max_seconds: float = 900.0
    busy_timeout: float | None = None  # None: the library's default
    proc: Proc | None = None
    out: Path = field(init=False)
    stop_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.out = self.folder / f"writer-{self.seed}.json"
        self.stop_file = self.folder / f"stop-{self.seed}"

    def start(self) -> Writer:
        args = {
            "--db": self.outbox,
            "--seed": self.seed,
            "--out": self.out,
            "--stop": self.stop_file,
            "--pause": self.pause,
            "--invalid": self.invalid,
            "--max-seconds": self.max_seconds,
        }
        if self.busy_timeout is not None:
            args["--busy-timeout"] = self.busy_timeout
        argv = [sys.executable, "-m", "tests.proof.writer"]
        argv += [str(x) for kv in args.items() for x in kv]
        self.proc = Proc(argv, worker_env(), self.folder / f"writer-{self.seed}.log")
        return self

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Stop it, wait for it, and return its result (``AssertionError`` if it failed)."""
        assert self.proc is not None
        self.stop_file.touch()
        code = self.proc.wait(timeout)
        assert code == 0, f"writer {self.seed} exited {code}: {self.proc.text()[-2000:]}"
        self.proc.kill()  # reaped, log closed
        result: dict[str, Any] = json.loads(self.out.read_text())
        result["stderr"] = self.proc.text()[-2000:]
        return result

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def tracked_totals(results: list[dict[str, Any]]) -> Totals:
    """What the writers' track calls that returned True added, per (kind, name)."""
    total: Counter[tuple[str, str]] = Counter()
    for r in results:
        for kind, name, count in r["tracked"]:
            total[(kind, name)] += count
    return dict(total)


def expected_drops(results: list[dict[str, Any]]) -> dict[str, int]:
    """The drops the writers' refused calls must show at the collector, per reason: each
    refused valid name is a ``storage_error`` or (the outbox over its size, seen by the
    track call) an ``over_capacity``, invalid names are ``invalid_name``; losses a writer
    still held in memory when it exited (``unstored``) never reach the outbox."""
    drops: Counter[str] = Counter()
    for r in results:
        drops["invalid_name"] += r["invalid_calls"]
        drops["storage_error"] += sum(c for _, _, c in r["refused_storage"])
        drops["over_capacity"] += sum(c for _, _, c in r["refused_over_capacity"])
        drops.subtract(r["unstored"])
    return {reason: n for reason, n in drops.items() if n}


# -- the invariants -----------------------------------------------------------------------------


#: What the collector may answer during a proof: 503 is "busy, retry" (SQLite's lock).
OK_ANSWERS = frozenset({"accepted", "duplicate", "503"})


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
    collector: Collector,
    outboxes: list[OutboxState],
    *,
    expected: Totals,
    over_capacity: int = 0,
) -> list[str]:
    """Every check of the failure model after a drain; an empty list means all hold.

    :param over_capacity: counts the workers' size cap dropped (``dropped the oldest N
        counts`` in their logs): the collector may miss exactly that many, in all, of
        what was tracked, never more, and may count no key more than was tracked.
    """
    problems = []
    lost, doubled, lines = compare(expected, collector.totals())
    if doubled or lost != over_capacity:
        problems.append(
            f"totals differ (lost {lost}, doubled {doubled}, dropped by the size cap "
            f"{over_capacity}): " + "; ".join(lines[:20])
        )
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
    # accepted/duplicate, or 503 (busy: retried); a 409 would be a conflicting id.
    bad = {a: n for a, n in collector.answers.statuses().items() if a not in OK_ANSWERS}
    if bad:
        problems.append(f"the collector answered {bad} (expected accepted/duplicate only)")
    # Every stored heartbeat was accepted exactly once; anything sent again, "duplicate".
    by_id = collector.answers.by_id()
    twice = [hid for hid, said in by_id.items() if said.count("accepted") > 1]
    if twice:
        problems.append(f"accepted more than once: {sorted(twice)[:5]}")
    accepted = {hid for hid, said in by_id.items() if "accepted" in said}
    if accepted != collector.heartbeat_ids():
        problems.append(
            f"{len(accepted)} heartbeats accepted, {len(collector.heartbeat_ids())} stored"
        )
    return problems


#: What a worker logs when its size cap drops the oldest unsent counts.
_CAP_LINE = re.compile(r"dropped the oldest (\d+) counts")


def size_cap_drops(log: str) -> int:
    """The counts a worker's size cap dropped, from its log (``worker.maintain``)."""
    return sum(int(n) for n in _CAP_LINE.findall(log))


# -- PII shapes: nothing of the kind may ever leave in a payload --------------------------------

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
