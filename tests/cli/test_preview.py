"""``outbox preview``: the exact JSON the next heartbeat would freeze."""

from __future__ import annotations

import json

from outbox import heartbeats
from tests.cli import scenes
from tests.cli.conftest import HB, INSTANCE

APP = {"HELIOS_VERSION": "1.4.2", "HELIOS_EDITION": "community"}


def test_compact_is_byte_for_byte_what_the_seal_then_freezes(run, outbox, clock):
    outbox.instance()
    outbox.track_many([("api", "users.list", 12), ("command", "sync", 1)])
    clock.advance(86400)  # a second UTC day in `days`
    outbox.track_many([("api", "users.list", 3), ("ui", "bulk_edit", 2)])
    assert not outbox.telemetry.track("api", "Users.List")  # dropped.invalid_name = 1
    clock.advance(30)
    r = run("preview", "--compact", env={**scenes.ON, **APP})
    assert r.exit_code == 0 and r.stderr == ""
    sealed = outbox.seal(HB[0])  # same instant, version and edition
    assert (
        r.stdout_bytes
        == sealed.payload.replace(f'"heartbeat_id":"{HB[0]}"'.encode(), b'"heartbeat_id":null')
        + b"\n"
    )
    assert json.loads(r.stdout) == {
        **sealed.counts(),
        "heartbeat_id": None,
    }
    assert sealed.counts()["instance_id"] == INSTANCE


def test_pretty_by_default_with_version_and_edition_from_the_environment(run, outbox, clock):
    outbox.track("command", "sync", 2)
    env = {
        **scenes.ON,
        "HELIOS_VERSION": "9.9.9",
        "HELIOS_EDITION": "licensed",
        # Not used by a preview: a bad value here must not stop it.
        "HELIOS_TELEMETRY_ENDPOINT": "ftp://nowhere",
    }
    r = run("preview", env=env)
    assert r.exit_code == 0
    with outbox.conn() as c:
        expected = heartbeats.preview(c, now=int(clock()), version="9.9.9", edition="licensed")
    assert r.stdout == json.dumps(expected, indent=2) + "\n"
    assert json.loads(r.stdout)["app"] == {"version": "9.9.9", "edition": "licensed"}
    assert json.loads(r.stdout)["command_usage"] == {"sync": 2}


def test_bad_edition_is_a_configuration_error(run, outbox):
    outbox.track("command", "sync")
    r = run("preview", env={"HELIOS_EDITION": "pro"})
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr == (
        "Error: HELIOS_EDITION='pro' is not understood; use community (daily heartbeat) "
        "or licensed (hourly)\n"
    )


def test_notes_go_to_stderr_and_stdout_stays_json(run, outbox, clock):
    scenes.busy(outbox, clock)
    r = run("preview", env={"HELIOS_TELEMETRY_ENABLED": "local"})
    assert json.loads(r.stdout)["sequence"] == 3
    assert r.stderr.splitlines() == [
        "note: heartbeat 1a2b3c02 (sequence 2) is in flight; this would be the next one",
        "note: telemetry is local: heartbeats are kept here, never sent",
    ]
    r = run("preview", env={"DO_NOT_TRACK": "1"})
    assert r.stderr.splitlines()[-1] == "note: telemetry is off: nothing is sent"


def test_missing_outbox(run, db_path):
    r = run("preview")
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == (
        f"no outbox at {db_path} yet: telemetry has not collected anything; nothing would be sent\n"
    )
    assert not db_path.exists()


def test_a_version_the_collector_would_refuse_is_a_configuration_error(run, outbox):
    """Previewing a heartbeat the collector would reject for good shows the fix instead."""
    outbox.track("api", "users.list", 4)
    r = run("preview", env={**scenes.ON, "HELIOS_VERSION": "latest"})
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (
        "Error: HELIOS_VERSION='latest' is not a PEP 440 or semver version (1.4.2, "
        "2.0.0-rc.1); the collector would refuse every heartbeat: fix the variable\n"
    )
