"""A writer process for the proof suite: a backend that tracks a known mix of names.

``python -m tests.proof.writer --db PATH --seed N --out RESULT.json --stop STOPFILE``

It calls ``Telemetry.track`` until the stop file appears (or ``--max-seconds``
pass), choosing kind, name and count from its own seeded generator, and keeps
exactly what each call returned: the counts of the calls that returned True (what
must reach the collector), the calls that returned False (a deliberately invalid
name, or a valid one refused: a ``storage_error`` when the client kept the loss to
write down later, its ``unstored`` grew by the call's count, else an ``over_capacity``
the client wrote at once, the outbox being over its size), and any exception (there
must be none: a track call never raises). Each call is timed. At the end it writes the
result atomically to ``--out`` as JSON.

``--pause`` seconds are slept after each call (0: full speed); ``--invalid`` is the
share of calls with a name the rules refuse (counted as ``dropped.invalid_name``);
``--busy-timeout`` is how long a call waits for the write lock (default: the library's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from array import array
from collections import Counter
from pathlib import Path

from outbox import Telemetry, db
from outbox.contract import Kind

#: The known mix: valid names per kind (DESIGN.md section 4 rules).
NAMES: dict[Kind, tuple[str, ...]] = {
    "api": (
        "users.list",
        "users.get",
        "users.create",
        "projects.list",
        "projects.update",
        "reports.export",
        "search",
        "billing.invoices.list",
    ),
    "command": ("sync", "users.import", "backup", "reindex"),
    "ui": ("bulk_edit", "export_csv", "dark_mode", "filter.apply"),
}
KIND_WEIGHTS: dict[Kind, int] = {"api": 6, "command": 1, "ui": 3}
#: Names the rules refuse: an email, an IP, a hostname, a UUID-ish id, upper case.
INVALID = ("jane@example.com", "10.0.0.1", "db01.corp", "Users.List", "users.1234")


def percentile(sorted_values: array[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests.proof.writer")
    p.add_argument("--db", required=True, type=Path)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stop", required=True, type=Path, help="stop once this file exists")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--invalid", type=float, default=0.0)
    p.add_argument("--max-count", type=int, default=3)
    p.add_argument("--busy-timeout", type=float, default=db.DEFAULT_BUSY_TIMEOUT)
    a = p.parse_args(argv)

    rng = random.Random(a.seed)
    kinds: list[Kind] = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    telemetry = Telemetry(db_path=a.db, enabled=True, environ={}, busy_timeout=a.busy_timeout)
    tracked: Counter[tuple[str, str]] = Counter()
    refused_storage: Counter[tuple[str, str]] = Counter()  # valid name, False: storage_error
    refused_capacity: Counter[tuple[str, str]] = Counter()  # valid name, False: over_capacity
    invalid_calls = invalid_true = calls = calls_false = 0
    exceptions: list[str] = []
    latencies = array("d")
    worst_at = max_seen = 0.0  # unix time at which the slowest call (not the first) started
    started = time.monotonic()
    deadline = started + a.max_seconds
    perf = time.perf_counter
    while True:
        if calls % 64 == 0 and (a.stop.exists() or time.monotonic() > deadline):
            break
        kind = rng.choices(kinds, weights)[0]
        bad = a.invalid > 0 and rng.random() < a.invalid
        name = rng.choice(INVALID) if bad else rng.choice(NAMES[kind])
        count = 1 if rng.random() < 0.7 else rng.randint(1, a.max_count)
        held = telemetry.unstored.get("storage_error", 0)
        t0 = perf()
        try:
            ok = telemetry.track(kind, name, count)
        except BaseException:  # noqa: BLE001 - the point is to see one if it ever happens
            exceptions.append(traceback.format_exc())
            ok = False
        spent = perf() - t0
        if latencies and spent > max_seen:
            max_seen, worst_at = spent, time.time() - spent
        latencies.append(spent)
        calls += 1
        if bad:
            invalid_calls += 1
            invalid_true += ok
        elif ok:
            tracked[(kind, name)] += count
        else:
            calls_false += 1
            if telemetry.unstored.get("storage_error", 0) - held == count:
                refused_storage[(kind, name)] += count
            else:
                refused_capacity[(kind, name)] += count
        if a.pause:
            time.sleep(a.pause)
    elapsed = time.monotonic() - started
    unstored = telemetry.unstored
    last_error = telemetry.last_error
    telemetry.close()
    worst = max(range(len(latencies)), key=latencies.__getitem__) if latencies else -1
    ordered = array("d", sorted(latencies))
    result = {
        "seed": a.seed,
        "pid": os.getpid(),
        "calls": calls,
        "seconds": elapsed,
        "tracked": [[k, n, c] for (k, n), c in sorted(tracked.items())],
        "refused_storage": [[k, n, c] for (k, n), c in sorted(refused_storage.items())],
        "refused_over_capacity": [[k, n, c] for (k, n), c in sorted(refused_capacity.items())],
        "calls_false": calls_false,
        "invalid_calls": invalid_calls,
        "invalid_true": invalid_true,
        "exceptions": exceptions[:5],
        "exception_count": len(exceptions),
        "unstored": unstored,
        "last_error": last_error,
        "latency": {
            "max": ordered[-1] if ordered else 0.0,
            "p999": percentile(ordered, 0.999),
            "p99": percentile(ordered, 0.99),
            "p50": percentile(ordered, 0.5),
            "worst_call": worst,
            "worst_at": worst_at,  # 0 is the first call, which opens the outbox
            "first": latencies[0] if latencies else 0.0,
            "max_after_first": max(latencies[1:], default=0.0),
        },
    }
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
