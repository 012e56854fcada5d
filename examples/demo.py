"""The main job, end to end on one machine (what ``make demo`` runs).

1. Starts the reference collector (``python -m collector``) on a free loopback
   port with a SQLite file.
2. Simulates several Helios instances, each with its own outbox: a realistic mix
   of relayed API calls (ids, user names and emails in the paths, named from the
   relay's declared vocabulary only), commands and UI actions over the last few days (an injected
   clock), plus a few hostile names that are refused and counted.
3. After each simulated day runs every instance's worker (``python -m worker
   --once``, real processes). One instance is offline for the first days: its
   endpoint does not answer, its heartbeat stays pending, and it delivers
   everything once it is back.
4. Prints what the collector received next to what was tracked, per name and
   per instance, and exits 1 unless they match exactly.

Nothing leaves the machine: the collector listens on 127.0.0.1 only.
Usage: ``python examples/demo.py [FOLDER] [--serve]`` (``--serve`` keeps the
collector running for the dashboard until Ctrl-C).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from outbox import Telemetry, db, store
from outbox.contract import KINDS, PAYLOAD_KEYS, bearer
from outbox.web.naming import DEFAULT_RELAY_RESOURCES, Vocabulary

DAYS = 3
# Not inherited: sharing is switched on per outbox (the organisation setting), and a
# DO_NOT_TRACK or HELIOS_TELEMETRY_ENABLED in your shell would decide for the workers.
OWN_VARIABLES = {"DO_NOT_TRACK", "HELIOS_TELEMETRY_ENABLED", "HELIOS_TELEMETRY_DB"}

# (method, path template, weight): {id}, {uuid}, {user} and {email} are filled per call.
RELAYED = [
    ("GET", "/users", 30),
    ("GET", "/users/{id}", 25),
    ("GET", "/users/{user}", 15),
    ("POST", "/users", 6),
    ("PATCH", "/users/{email}", 4),
    ("DELETE", "/users/{id}", 1),
    ("GET", "/groups", 10),
    ("GET", "/groups/{uuid}/members", 12),
    ("POST", "/groups/{uuid}/members", 3),
    ("GET", "/projects/{id}/builds", 15),
    ("POST", "/projects/{id}/deploy", 2),
]
# What the relay's names are made of: the directory APIs, extended by the host app.
RELAY = Vocabulary.build([*DEFAULT_RELAY_RESOURCES, "projects.builds", "projects.deploy"])
USERNAMES = ["jdoe", "john_smith", "a.lovelace", "ghopper", "edsger"]
COMMANDS = [("sync", 8), ("users.import", 2), ("deploy", 3), ("export", 1)]
UI_ACTIONS = [("bulk_edit", 5), ("export_csv", 3), ("column_sort", 12), ("dark_mode", 1)]
# What careless code might pass as a name: refused, counted as invalid_name, never stored.
HOSTILE = ["alice@example.com", "10.0.0.7", "delete from events", "db1.corp.internal"]


@dataclass
class Instance:
    label: str
    edition: str
    volume: int  # events per simulated day
    offline_days: int = 0
    folder: Path = Path()
    instance_id: str = ""
    tracked: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: int = 0
    sent_days: list[str] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.folder / "telemetry.db"


FLEET = [
    Instance("acme (licensed)", "licensed", 900),
    Instance("lab-1 (community)", "community", 400),
    Instance("lab-2 (community)", "community", 250),
    Instance("field (offline 2 days)", "community", 300, offline_days=2),
]


def pick(rng: random.Random, table: list[tuple[str, int]]) -> str:
    names, weights = zip(*table, strict=True)
    return rng.choices(names, weights)[0]


def relayed_path(rng: random.Random, template: str) -> str:
    return template.format(
        id=rng.randint(1, 99_999),
        uuid=f"{rng.getrandbits(128):032x}",
        email=f"user{rng.randint(1, 500)}@example.org",
        user=rng.choice(USERNAMES),
    )


def simulate_day(inst: Instance, day_start: float, rng: random.Random) -> None:
    """One day of usage: track calls at increasing instants of that UTC day."""
    now = [day_start]
    t = Telemetry(db_path=inst.db, environ={}, clock=lambda: now[0])
    if not t.enabled:  # what an administrator's click on the privacy page stores
        t.set_enabled(True)
    routes = [(m, p) for m, p, _ in RELAYED]
    weights = [w for _, _, w in RELAYED]
    for i in range(inst.volume):
        now[0] = day_start + 8 * 3600 + i * (10 * 3600 / inst.volume)
        roll = rng.random()
        if roll < 0.75:
            method, template = rng.choices(routes, weights)[0]
            kind, name = "api", RELAY.name(method, relayed_path(rng, template))
            assert name is not None  # every template above is declared
            ok = t.track_api_call(name)
        elif roll < 0.85:
            kind, name = "command", pick(rng, COMMANDS)
            ok = t.track_command(name)
        else:
            kind, name = "ui", pick(rng, UI_ACTIONS)
            ok = t.track_ui_action(name)
        if ok:
            inst.tracked[(kind, str(name))] += 1
    for bad in rng.sample(HOSTILE, 2):
        inst.refused += not t.track_ui_action(bad)
    inst.instance_id = t.instance_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(folder: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "--db",
            str(folder / "collector.db"),
            "--port",
            "0",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C stops the demo, which stops the collector
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the banner names the URL it listens on
        if "dashboard" in line:
            return proc, line.split()[-1].removesuffix("/insights")
    proc.kill()
    raise SystemExit(f"the collector did not start (exit {proc.wait()})")


def run_workers(fleet: list[Instance], base: str, day: int) -> dict[str, int]:
    """``python -m worker --once`` for every instance at once; exit codes by label."""
    dead = f"http://127.0.0.1:{free_port()}/api/instances/heartbeat"  # nothing listens
    procs = {}
    for inst in fleet:
        offline = day < inst.offline_days
        env = {
            **{k: v for k, v in os.environ.items() if k not in OWN_VARIABLES},
            "HELIOS_TELEMETRY_DB": str(inst.db),
            "HELIOS_TELEMETRY_ENDPOINT": dead if offline else base + "/api/instances/heartbeat",
            "HELIOS_EDITION": inst.edition,
            "HELIOS_VERSION": "2.4.1",
        }
        args = ["--once", "--log-level", "error"]
        if offline:
            args += ["--retry-attempts", "2", "--retry-max-wait", "0.2", "--connect-timeout", "1"]
        procs[inst.label] = subprocess.Popen(
            [sys.executable, "-m", "worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return {label: p.wait(timeout=120) for label, p in procs.items()}


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def secret_of(inst: Instance) -> str:
    """The instance secret its outbox made (what its worker sends; needed to read its data)."""
    conn = db.connect(inst.db)
    try:
        return str(store.existing_secret(conn))
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    serve = "--serve" in argv
    args = [a for a in argv if a != "--serve"]
    folder = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="helios-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rng = random.Random(2026)
    for inst in FLEET:
        inst.folder = folder / inst.label.split()[0]
        inst.folder.mkdir(exist_ok=True)

    collector, base = start_collector(folder)
    try:
        print(f"collector listening on {base} (SQLite: {folder / 'collector.db'})\n")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        for day in range(DAYS):
            start = today - timedelta(days=DAYS - day)
            for inst in FLEET:
                simulate_day(inst, start.timestamp(), rng)
            codes = run_workers(FLEET, base, day)
            line = ", ".join(
                f"{inst.label.split()[0]} {'sent' if codes[inst.label] == 0 else 'offline, kept'}"
                for inst in FLEET
            )
            print(f"{start:%Y-%m-%d}: {sum(i.volume for i in FLEET):>5} events  workers: {line}")

        insights = get_json(base + "/api/insights?days=30")
        received = Counter(
            {
                (kind, name): int(count)
                for kind, key in PAYLOAD_KEYS.items()
                for name, count in insights[key].items()
            }
        )
        tracked: Counter[tuple[str, str]] = sum((i.tracked for i in FLEET), Counter())
        # A name fewer than K instances reported is published only in its kind's "other".
        for kind, name in [k for k in tracked if k not in received]:
            tracked[(kind, "(other)")] += tracked.pop((kind, name))
        received.update({(k, "(other)"): n for k, n in insights["other"].items() if n})
        ok = report(tracked, received)
        ok &= report_instances(base)
        refused = sum(i.refused for i in FLEET)
        got_refused = insights["dropped"].get("invalid_name", 0)
        print(f"\nrefused names (counted, never stored): tracked {refused}, received {got_refused}")
        ok &= refused == got_refused
        print(f"finished in {time.monotonic() - started:.1f} s")
        if not ok:
            print("MISMATCH: the collector's totals differ from what was tracked", file=sys.stderr)
            return 1
        print("\nall totals match exactly: nothing lost, nothing counted twice.")
        if serve:
            print(f"\ndashboard: {base}/insights   (Ctrl-C to stop)")
            try:
                collector.wait()
            except KeyboardInterrupt:
                pass
        else:
            print(
                "\nthe dashboard on the data just received:\n"
                f"  .venv/bin/outbox-collector --db {folder / 'collector.db'} --port 8080\n"
                "  then open http://127.0.0.1:8080/insights   (or: make demo ARGS=--serve)\n"
                "what one instance stored and sent:\n"
                f"  .venv/bin/outbox --db {FLEET[0].db} heartbeats"
            )
        return 0
    finally:
        collector.terminate()
        collector.wait(timeout=10)


def report(tracked: Counter[tuple[str, str]], received: Counter[tuple[str, str]]) -> bool:
    print(f"\n{'kind':8} {'name':28} {'tracked':>8} {'received':>9}")
    for key in sorted(tracked.keys() | received.keys()):
        mark = "" if tracked[key] == received[key] else "  <-- differs"
        print(f"{key[0]:8} {key[1]:28} {tracked[key]:>8} {received[key]:>9}{mark}")
    total_t, total_r = sum(tracked.values()), sum(received.values())
    print(f"{'total':37} {total_t:>8} {total_r:>9}")
    return tracked == received


def report_instances(base: str) -> bool:
    head = f"{'heartbeats':>10} {'gaps':>5} {'tracked':>8} {'received':>9}"
    print(f"\n{'instance':24} {'edition':10} {head}")
    ok = True
    for inst in FLEET:
        info = get_json(
            f"{base}/api/instances/{inst.instance_id}",
            {"Authorization": bearer(secret_of(inst))},
        )
        got = sum(int(info["totals"].get(kind, 0)) for kind in KINDS)
        want = sum(inst.tracked.values())
        gaps = len(info["gaps"])
        ok &= got == want and gaps == 0
        print(
            f"{inst.label:24} {info['edition']:10} {info['heartbeats']:>10} {gaps:>5} "
            f"{want:>8} {got:>9}"
        )
    return ok


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
