"""``outbox status``: the state of telemetry and of the outbox, and what decided it.

:func:`gather` builds the ``--json`` document from library calls; :func:`render`
turns that same document into text, so the two never disagree.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import click

from outbox import db, health, heartbeats, maintenance, store
from outbox.cli.context import CliContext
from outbox.cli.fmt import MODES, human_bytes, plural, short_id, when, wrap_value
from outbox.config import ENDPOINT, Config
from outbox.contract import iso_utc
from outbox.store import Meta

LABEL = 15

#: What the worker does when it has never written ``next_due_at`` (DESIGN.md section 5).
FIRST_DUE = "when the worker runs: 5 minutes after it starts"


def _hint(source: str, locked: bool) -> str:
    if source == "DO_NOT_TRACK":
        return "locked; unset DO_NOT_TRACK to let the organisation setting apply"
    if locked:
        return (
            "locked; set HELIOS_TELEMETRY_ENABLED to true or local, or unset it, "
            "to let the organisation setting apply"
        )
    if source == "default":
        return "`outbox enable` turns it on"
    return "`outbox enable` / `outbox disable` change it"


def _iso_meta(value: object) -> str | None:
    """A time the worker stored in ``meta``: unix seconds (or, tolerated, ISO text)."""
    if value is None:
        return None
    try:
        return iso_utc(int(str(value)))
    except ValueError:
        return str(value)


def _unix(iso: str) -> int | None:
    try:
        return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


def gather(obj: CliContext, conn: sqlite3.Connection | None, cfg: Config) -> dict[str, Any]:
    """The ``status --json`` document (documented in docs/cli.md, "JSON output")."""
    now = obj.now()
    problems = [p.message for p in cfg.problems]
    endpoint: str | None = None if cfg.problem(ENDPOINT) else cfg.endpoint

    org = store.org_enabled(conn) if conn is not None else None
    decision = cfg.decision(org)
    sizes = maintenance.file_sizes(obj.db_path)
    report: dict[str, Any] = {
        "mode": decision.mode,
        "collecting": decision.collecting,
        "sending": decision.sending,
        "decided_by": {
            "source": decision.source,
            "locked": decision.locked,
            "reason": decision.reason,
        },
        "organization_setting": org,
        "instance_id": None,
        "outbox": {
            "path": str(obj.db_path),
            "exists": conn is not None,
            "bytes": sizes.total,
            "database_bytes": sizes.database,
            "wal_bytes": sizes.wal,
        },
        "pending": {"events": 0, "names": 0},
        "in_flight": None,
        "last_delivery": None,
        "next_due_at": None,
        "last_error": None,
        "endpoint": {"url": endpoint, "retired": False},
        "dropped": {"pending": {}, "total": {}},
        "worker": None,
        "worker_error": None,
        "worker_health": None,
        "writers": None,
        "web_tracking": None,
        "files_open_to_others": [],
        "problems": problems,
    }
    if conn is None:
        return report
    for path, mode in db.open_to_others(obj.db_path):
        report["files_open_to_others"].append({"path": str(path), "mode": f"{mode:04o}"})
        problems.append(
            f"{path} is readable or writable by other users (mode {mode:04o}); "
            f"make it private: chmod 600 {path}"
        )

    counters = store.pending_counters(conn)
    report["instance_id"] = store.existing_instance_id(conn)
    report["pending"] = {"events": sum(c.count for c in counters), "names": len(counters)}
    inflight = heartbeats.pending(conn)
    if inflight is not None:
        report["in_flight"] = {
            "id": inflight.id,
            "sequence": inflight.sequence,
            "sealed_at": iso_utc(inflight.sealed_at),
            "attempts": inflight.attempts,
            "last_attempt_at": (
                None if inflight.last_attempt_at is None else iso_utc(inflight.last_attempt_at)
            ),
            "last_error": inflight.last_error,
        }
    settled = next((h for h in heartbeats.history(conn, limit=2) if h.status != "pending"), None)
    if settled is not None:
        report["last_delivery"] = {
            "id": settled.id,
            "sequence": settled.sequence,
            "status": settled.status,
            "settled_at": None if settled.settled_at is None else iso_utc(settled.settled_at),
            "attempts": settled.attempts,
            "receipt": None if settled.receipt is None else json.loads(settled.receipt),
            "last_error": settled.last_error,
        }
    report["next_due_at"] = _iso_meta(store.get(conn, Meta.NEXT_DUE_AT))
    if inflight is not None and inflight.last_error:
        report["last_error"] = inflight.last_error
    elif settled is not None and settled.last_error:
        report["last_error"] = settled.last_error
    retired = store.get(conn, Meta.RETIRED_ENDPOINT)
    report["endpoint"]["retired"] = retired is not None and str(retired) == endpoint
    dropped = store.drops(conn)
    report["dropped"] = {"pending": dropped.pending, "total": dropped.total}
    lease = store.worker_lease(conn)
    if lease is not None:
        report["worker"] = {
            "pid": lease.pid,
            "owner": lease.owner,
            "acquired_at": iso_utc(lease.acquired_at),
            "expires_at": iso_utc(lease.expires_at),
            "holds_lease": lease.held(now),
        }
    error = store.get(conn, Meta.LAST_CYCLE_ERROR)
    if error is not None:
        at = _iso_meta(store.get(conn, Meta.LAST_CYCLE_AT))
        report["worker_error"] = {"message": str(error), "at": at}
    state = health.read(conn, now=now, decision=decision, edition=cfg.edition)
    report["worker_health"] = state.as_json()
    report["writers"] = store.get_json(conn, Meta.WRITERS)
    report["web_tracking"] = store.web_tracking(conn)
    if state.message is not None:
        problems.append(state.message)
    if state.held_back is not None and not decision.sending:
        problems.append(str(state.held_back.get("message", "")))
    return report


def _when_iso(iso: str | None, now: int) -> str:
    if iso is None:
        return "-"
    ts = _unix(iso)
    return iso if ts is None else when(ts, now)


def render(report: dict[str, Any], now: int) -> list[str]:
    """The text of ``outbox status``, from the :func:`gather` document."""
    lines: list[str] = []

    def add(label: str, value: str) -> None:
        lines.extend(wrap_value(label, value, label_width=LABEL))

    by = report["decided_by"]
    add("telemetry", MODES[report["mode"]])
    prefix = "the default: " if by["source"] == "default" else ""
    add("decided by", prefix + by["reason"])
    add("", f"({_hint(by['source'], by['locked'])})")
    org = report["organization_setting"]
    if by["source"] != "organization_setting" and org is not None:
        state = "on" if org else "off"
        note = " (stored; applies once the lock is lifted)" if by["locked"] else ""
        add("organisation", f"chose {state}{note}")
    box = report["outbox"]
    if not box["exists"]:
        add("outbox", f"{box['path']} (none yet: telemetry has not collected anything)")
    else:
        add("instance id", report["instance_id"] or "none yet (made with the first heartbeat)")
        add("outbox", f"{box['path']} ({human_bytes(box['bytes'])})")
        pending = report["pending"]
        add(
            "pending",
            f"{plural(pending['events'], 'event')} in {plural(pending['names'], 'name')}"
            if pending["events"]
            else "nothing",
        )
        _render_heartbeats(report, now, add)
    _render_endpoint(report, add)
    if box["exists"]:
        _render_drops_and_worker(report, now, add)
    if report["web_tracking"]:
        add("web tracking", _web_tracking(report["web_tracking"]))
    for problem in report["problems"]:
        add("problem", problem)
    return lines


def _web_tracking(sources: dict[str, Any]) -> str:
    """One line for what the web middlewares counted, by source, with their warnings."""
    return "; ".join(
        f"{source}: {s['counted']} of {plural(s['seen'], 'request')} counted"
        + (f", {s['unknown_name']} unknown_name" if s["unknown_name"] else "")
        + (f" (WARNING: {s['warning']})" if s["warning"] else "")
        for source, s in sources.items()
    )


def _render_heartbeats(report: dict[str, Any], now: int, add: Any) -> None:
    flight = report["in_flight"]
    if flight is None:
        add("in flight", "no heartbeat waiting to be delivered")
    else:
        add(
            "in flight",
            f"sequence {flight['sequence']} (heartbeat {short_id(flight['id'])}), sealed "
            f"{_when_iso(flight['sealed_at'], now)}, {plural(flight['attempts'], 'attempt')}",
        )
    last = report["last_delivery"]
    if last is None:
        add("last delivery", "none yet")
    else:
        verbs = {"sent": "sent", "rejected": "rejected", "local": "kept here (local)"}
        text = (
            f"sequence {last['sequence']} {verbs[last['status']]} "
            f"{_when_iso(last['settled_at'], now)}"
        )
        receipt = last["receipt"]
        if isinstance(receipt, dict) and "status" in receipt:
            text += f'; the receiver answered "{receipt["status"]}"'
        add("last delivery", text)
    if report["mode"] == "off":
        add("next due", "never: telemetry is off")
    elif report["next_due_at"] is None:
        add("next due", FIRST_DUE)
    else:
        add("next due", _when_iso(report["next_due_at"], now))
    if report["last_error"]:
        add("last error", report["last_error"])


def _render_endpoint(report: dict[str, Any], add: Any) -> None:
    endpoint = report["endpoint"]
    if endpoint["url"] is None:
        add("endpoint", "not usable (see the problem below)")
    elif endpoint["retired"]:
        add(
            "endpoint",
            f"{endpoint['url']} is RETIRED (it answered 410 Gone); nothing is sent until "
            "HELIOS_TELEMETRY_ENDPOINT names another one",
        )
    else:
        unused = "" if report["sending"] else f" (not used while telemetry is {report['mode']})"
        add("endpoint", endpoint["url"] + unused)


def _render_drops_and_worker(report: dict[str, Any], now: int, add: Any) -> None:
    dropped = report["dropped"]
    parts = [
        f"{reason} {dropped['pending'].get(reason, 0)} pending, {total} in all"
        for reason, total in sorted(dropped["total"].items())
        if total
    ]
    add("dropped", "; ".join(parts) if parts else "none")
    worker = report["worker"]
    if worker is None:
        add("worker", "none has run on this outbox yet (outbox-worker sends the heartbeats)")
    elif worker["holds_lease"]:
        add(
            "worker",
            f"running: pid {worker['pid']} holds the lease until "
            f"{_when_iso(worker['expires_at'], now)}",
        )
    else:
        add(
            "worker",
            f"not running: the lease of pid {worker['pid']} expired "
            f"{_when_iso(worker['expires_at'], now)}",
        )
    error = report["worker_error"]
    if error is not None:
        add(
            "worker error",
            f"its last cycle failed {_when_iso(error['at'], now)}: {error['message']}",
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as one JSON object.")
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Show whether telemetry is on, what decided it, and the state of the outbox.

    Says on, off or local and why (DO_NOT_TRACK, HELIOS_TELEMETRY_ENABLED, the
    organisation setting or the default), the instance id, the outbox size,
    pending counts, the heartbeat in flight, the last delivery, when the next
    heartbeat is due, the last error, whether the endpoint is retired, dropped
    counts, whether a worker is running and why its last cycle failed. Never
    creates the outbox.

    Example:

    \b
        outbox status --json | jq .pending
    """
    cfg = obj.config()
    with obj.reading() as conn:
        report = gather(obj, conn, cfg)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(render(report, obj.now())))
