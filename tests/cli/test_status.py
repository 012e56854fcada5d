"""``outbox status``: every line, the JSON document, and what decided the state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outbox import heartbeats, store
from outbox.cli.fmt import human_bytes
from outbox.config import DEFAULT_ENDPOINT
from outbox.maintenance import file_sizes
from outbox.store import Meta
from tests.cli import scenes
from tests.cli.conftest import HB, INSTANCE
from tests.support.clock import T0

RELATIVE = Path("outbox/telemetry.db")


def field(text: str, label: str) -> str:
    """The value of one ``status`` field, its wrapped lines joined again."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(label.ljust(15)))
    parts = [lines[start][15:]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 15):
            break
        parts.append(line[15:])
    return " ".join(parts)


@pytest.fixture
def here(monkeypatch, tmp_path):
    """Run from the test folder, so that the outbox path printed is short and fixed."""
    monkeypatch.chdir(tmp_path)


def test_a_busy_outbox_line_by_line(run, outbox, clock, here):
    scenes.busy(outbox, clock)
    r = run("status", env=scenes.ON, db_path=RELATIVE)
    assert r.exit_code == 0, r.output
    size = human_bytes(file_sizes(outbox.path).total)
    assert r.output.splitlines() == [
        "telemetry      on: usage counts are collected and sent",
        "decided by     HELIOS_TELEMETRY_ENABLED is true in the environment",
        "               (`outbox enable` / `outbox disable` change it)",
        f"instance id    {INSTANCE}",
        f"outbox         outbox/telemetry.db ({size})",
        "pending        6 events in 3 names",
        "in flight      sequence 2 (heartbeat 1a2b3c02), sealed 2026-11-25 11:01 UTC",
        "               (10m ago), 2 attempts",
        "last delivery  sequence 1 sent 2026-11-25 10:01 UTC (1h 10m ago); the receiver",
        '               answered "accepted"',
        "next due       2026-11-25 12:01 UTC (in 50m)",
        "last error     HTTP 503 Service Unavailable",
        f"endpoint       {DEFAULT_ENDPOINT}",
        "dropped        invalid_name 1 pending, 1 in all",
        "worker         running: pid 4242 holds the lease until 2026-11-25 11:16 UTC",
        "               (in 5m)",
    ]
    assert max(len(line) for line in r.output.splitlines()) <= 80


def test_json_document(run, outbox, clock):
    scenes.busy(outbox, clock)
    with outbox.conn() as c:
        first = heartbeats.get(c, HB[0])
    assert first is not None
    r = run("status", "--json", env=scenes.ON)
    assert r.exit_code == 0
    sizes = file_sizes(outbox.path)
    zero = {"invalid_name": 0, "over_capacity": 0, "storage_error": 0, "unknown_name": 0}
    assert json.loads(r.stdout) == {
        "mode": "on",
        "collecting": True,
        "sending": True,
        "decided_by": {
            "source": "HELIOS_TELEMETRY_ENABLED",
            "locked": False,
            "reason": "HELIOS_TELEMETRY_ENABLED is true in the environment",
        },
        "organization_setting": None,
        "instance_id": INSTANCE,
        "outbox": {
            "path": str(outbox.path),
            "exists": True,
            "bytes": sizes.total,
            "database_bytes": sizes.database,
            "wal_bytes": sizes.wal,
        },
        "pending": {"events": 6, "names": 3},
        "in_flight": {
            "id": HB[1],
            "sequence": 2,
            "sealed_at": "2026-11-25T11:01:00Z",
            "attempts": 2,
            "last_attempt_at": "2026-11-25T11:01:00Z",
            "last_error": "HTTP 503 Service Unavailable",
        },
        "last_delivery": {
            "id": HB[0],
            "sequence": 1,
            "status": "sent",
            "settled_at": "2026-11-25T10:01:00Z",
            "attempts": 1,
            "receipt": {"status": "accepted", "payload_sha256": first.payload_sha256},
            "last_error": None,
        },
        "next_due_at": "2026-11-25T12:01:00Z",
        "last_error": "HTTP 503 Service Unavailable",
        "endpoint": {"url": DEFAULT_ENDPOINT, "retired": False},
        "dropped": {"pending": {**zero, "invalid_name": 1}, "total": {**zero, "invalid_name": 1}},
        "worker": {
            "pid": 4242,
            "owner": "helios-1:4242:t0k3n",
            "acquired_at": "2026-11-25T10:00:00Z",
            "expires_at": "2026-11-25T11:16:00Z",
            "holds_lease": True,
        },
        "worker_error": None,
        "worker_health": {
            "last_seen_at": "2026-11-25T11:11:00Z",  # the lease is held: a worker runs now
            "last_export_at": None,
            "missing": False,
            "message": None,
            "held_back": None,
        },
        "writers": {"mode": "on", "source": "HELIOS_TELEMETRY_ENABLED", "at": T0},
        "web_tracking": None,
        "files_open_to_others": [],
        "problems": [],
    }


def test_missing_outbox_says_nothing_collected_and_creates_nothing(run, db_path, here):
    r = run("status", db_path=RELATIVE)
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        "telemetry      off: nothing is collected or sent",
        "decided by     the default: telemetry is off until someone turns it on",
        "               (`outbox enable` turns it on)",
        "outbox         outbox/telemetry.db (none yet: telemetry has not collected",
        "               anything)",
        f"endpoint       {DEFAULT_ENDPOINT}",
        "               (not used while telemetry is off)",
    ]
    doc = json.loads(run("status", "--json", db_path=RELATIVE).stdout)
    assert doc["outbox"] == {
        "path": "outbox/telemetry.db",
        "exists": False,
        "bytes": 0,
        "database_bytes": 0,
        "wal_bytes": 0,
    }
    assert (doc["instance_id"], doc["pending"], doc["worker"]) == (
        None,
        {"events": 0, "names": 0},
        None,
    )
    assert not db_path.exists() and not db_path.parent.exists()


@pytest.mark.parametrize(
    ("env", "org", "mode", "source", "locked", "decided"),
    [
        ({}, None, "off", "default", False, "the default: telemetry is off until someone"),
        ({"HELIOS_TELEMETRY_ENABLED": "yes"}, None, "on", "HELIOS_TELEMETRY_ENABLED", False,
         "HELIOS_TELEMETRY_ENABLED is true in the environment"),
        ({"HELIOS_TELEMETRY_ENABLED": "local"}, None, "local", "HELIOS_TELEMETRY_ENABLED", False,
         "HELIOS_TELEMETRY_ENABLED=local: collected and shown here, never sent"),
        ({"HELIOS_TELEMETRY_ENABLED": "0"}, True, "off", "HELIOS_TELEMETRY_ENABLED", True,
         "HELIOS_TELEMETRY_ENABLED is false in the environment"),
        ({"DO_NOT_TRACK": "1", "HELIOS_TELEMETRY_ENABLED": "true"}, True, "off", "DO_NOT_TRACK",
         True, "DO_NOT_TRACK is set in the environment"),
        ({}, True, "on", "organization_setting", False, "the organisation turned sharing on"),
        ({"HELIOS_TELEMETRY_ENABLED": "true"}, False, "off", "organization_setting", False,
         "the organisation turned sharing off"),
        ({"HELIOS_TELEMETRY_ENABLED": "local"}, True, "local", "organization_setting", False,
         "the organisation turned sharing on (HELIOS_TELEMETRY_ENABLED=local: never sent)"),
    ],
)  # fmt: skip
def test_what_decided_the_state(run, conn, env, org, mode, source, locked, decided):
    if org is not None:
        from outbox import store

        store.put_org_enabled(conn, org, now=T0)
    doc = json.loads(run("status", "--json", env=env).stdout)
    assert (doc["mode"], doc["decided_by"]["source"], doc["decided_by"]["locked"]) == (
        mode,
        source,
        locked,
    )
    assert doc["organization_setting"] is org
    assert field(run("status", env=env).output, "decided by").startswith(decided)


def test_a_locked_state_shows_the_stored_choice_and_how_to_lift_the_lock(run, outbox):
    run("enable")
    lines = run("status", env={"DO_NOT_TRACK": "1"}).output.splitlines()
    assert lines[:5] == [
        "telemetry      off: nothing is collected or sent",
        "decided by     DO_NOT_TRACK is set in the environment",
        "               (locked; unset DO_NOT_TRACK to let the organisation setting",
        "               apply)",
        "organisation   chose on (stored; applies once the lock is lifted)",
    ]


def test_bad_variables_are_reported_not_fatal(run, outbox):
    outbox.track("command", "sync")
    env = {
        "HELIOS_TELEMETRY_ENABLED": "maybe",
        "HELIOS_TELEMETRY_ENDPOINT": "http://example.com/x",
        "HELIOS_EDITION": "pro",
    }
    r = run("status", "--json", env=env)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert (doc["mode"], doc["decided_by"]["locked"], doc["endpoint"]["url"]) == ("off", True, None)
    assert doc["problems"] == [
        "HELIOS_TELEMETRY_ENABLED='maybe' is not understood, so telemetry is off; use true, "
        "false or local (or unset it)",
        "HELIOS_TELEMETRY_ENDPOINT='http://example.com/x' is plain http; only https:// is "
        "accepted, except for loopback addresses (127.0.0.1, ::1, localhost)",
        "HELIOS_EDITION='pro' is not understood; use community (daily heartbeat) or licensed "
        "(hourly)",
    ]
    text = run("status", env=env).output
    assert field(text, "endpoint") == "not usable (see the problem below)"
    assert field(text, "problem") == doc["problems"][0]
    assert doc["decided_by"]["reason"] == doc["problems"][0]  # one sentence, everywhere


def test_retired_endpoint_only_while_it_is_the_configured_one(run, outbox):
    outbox.track("command", "sync")
    outbox.set_meta("retired_endpoint", DEFAULT_ENDPOINT)
    doc = json.loads(run("status", "--json", env=scenes.ON).stdout)
    assert doc["endpoint"] == {"url": DEFAULT_ENDPOINT, "retired": True}
    assert field(run("status", env=scenes.ON).output, "endpoint") == (
        f"{DEFAULT_ENDPOINT} is RETIRED (it answered 410 Gone); nothing is sent until "
        "HELIOS_TELEMETRY_ENDPOINT names another one"
    )
    moved = {
        **scenes.ON,
        "HELIOS_TELEMETRY_ENDPOINT": "https://new.example/api/instances/heartbeat",
    }
    doc = json.loads(run("status", "--json", env=moved).stdout)
    assert doc["endpoint"] == {
        "url": "https://new.example/api/instances/heartbeat",
        "retired": False,
    }


def test_worker_lease_expired_and_never_taken(run, outbox, clock):
    outbox.track("command", "sync")
    assert field(run("status").output, "worker") == (
        "none has run on this outbox yet (outbox-worker sends the heartbeats)"
    )
    outbox.lease(77, acquired_at=T0 - 7200, expires_at=T0 - 3600)
    r = run("status", "--json")
    assert json.loads(r.stdout)["worker"]["holds_lease"] is False
    assert field(run("status").output, "worker") == (
        "not running: the lease of pid 77 expired 2026-11-25 09:00 UTC (1h ago)"
    )


def test_next_due_before_the_worker_ever_ran(run, outbox):
    outbox.track("command", "sync")
    assert field(run("status", env=scenes.ON).output, "next due") == (
        "when the worker runs: 5 minutes after it starts"
    )
    assert json.loads(run("status", "--json", env=scenes.ON).stdout)["next_due_at"] is None


def test_local_heartbeat_and_rejected_heartbeat_as_last_delivery(run, outbox, clock):
    outbox.track("command", "sync")
    outbox.seal(HB[0], local=True)
    env = {"HELIOS_TELEMETRY_ENABLED": "local"}
    assert field(run("status", env=env).output, "last delivery") == (
        "sequence 1 kept here (local) 2026-11-25 10:00 UTC (now)"
    )
    outbox.track("command", "sync")
    outbox.seal(HB[1])
    clock.advance(90)
    outbox.settle(HB[1], "rejected", attempts=1, error="HTTP 422: days is not an object")
    doc = json.loads(run("status", "--json", env=env).stdout)
    assert doc["last_delivery"]["status"] == "rejected"
    assert doc["last_error"] == "HTTP 422: days is not an object"
    assert doc["in_flight"] is None
    text = run("status", env=env).output
    assert field(text, "last delivery") == "sequence 2 rejected 2026-11-25 10:01 UTC (now)"
    assert field(text, "in flight") == "no heartbeat waiting to be delivered"
    assert field(text, "last error") == "HTTP 422: days is not an object"


@pytest.mark.parametrize("stored", [T0 + 7200, str(T0 + 7200), "2026-11-25T12:00:00Z"])
def test_next_due_as_the_worker_stores_it(run, outbox, stored):
    outbox.track("command", "sync")
    outbox.set_meta("next_due_at", stored)
    assert field(run("status", env=scenes.ON).output, "next due") == "2026-11-25 12:00 UTC (in 2h)"
    doc = json.loads(run("status", "--json", env=scenes.ON).stdout)
    assert doc["next_due_at"] == "2026-11-25T12:00:00Z"


def test_a_worker_nobody_started_is_reported_with_the_command(run, outbox, clock):
    outbox.track("command", "sync")
    clock.advance(3 * 3600)
    doc = json.loads(run("status", "--json", env=scenes.ON).stdout)
    health = doc["worker_health"]
    assert (health["missing"], health["last_seen_at"]) == (True, None)
    assert health["message"] == (
        "no worker has ever run on this outbox and counts have waited 3 hours, so nothing is "
        "sent; start outbox-worker with the same HELIOS_TELEMETRY_* environment as the app (a "
        "systemd unit is in contrib/systemd), or run `outbox-worker --once` from cron"
    )
    assert doc["problems"] == [health["message"]]
    text = run("status", env=scenes.ON).output
    assert field(text, "problem") == health["message"]
    # While sharing is off nobody is missing.
    assert json.loads(run("status", "--json").stdout)["worker_health"]["missing"] is False


def test_files_open_to_other_users_are_reported(run, outbox):
    outbox.track("command", "sync")
    outbox.path.chmod(0o644)
    doc = json.loads(run("status", "--json", env=scenes.ON).stdout)
    assert doc["files_open_to_others"] == [{"path": str(outbox.path), "mode": "0644"}]
    assert doc["problems"][0] == (
        f"{outbox.path} is readable or writable by other users (mode 0644); make it private: "
        f"chmod 600 {outbox.path}"
    )


def test_a_worker_holding_back_is_reported(run, outbox):
    outbox.track("command", "sync")
    outbox.set_meta(
        "worker_held_back", {"message": "telemetry is off for this worker (…)", "at": 1}
    )
    doc = json.loads(run("status", "--json").stdout)
    assert doc["worker_health"]["held_back"]["message"] == "telemetry is off for this worker (…)"
    assert "telemetry is off for this worker (…)" in doc["problems"]


def test_the_last_failed_cycle_of_the_worker_until_a_good_one(run, outbox, clock):
    """What the worker keeps in meta when a cycle fails (``Worker.record_failure``) is
    shown; the worker deletes it after the next good cycle, and the line goes with it."""
    outbox.track("command", "sync")
    message = f"{outbox.path}: the disk is full (database or disk is full); free some space"
    outbox.set_meta("last_cycle_error", message)
    outbox.set_meta("last_cycle_at", T0 - 120)
    doc = json.loads(run("status", "--json").stdout)
    assert doc["worker_error"] == {"message": message, "at": "2026-11-25T09:58:00Z"}
    assert field(run("status").output, "worker error") == (
        f"its last cycle failed 2026-11-25 09:58 UTC (2m ago): {message}"
    )
    with outbox.conn() as c:
        store.delete(c, Meta.LAST_CYCLE_ERROR)
    assert json.loads(run("status", "--json").stdout)["worker_error"] is None
    assert "worker error" not in run("status").output
