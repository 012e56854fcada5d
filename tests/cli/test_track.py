"""``outbox track``: appends one event when collecting; says so when it cannot."""

from __future__ import annotations

import pytest

from tests.cli import scenes
from tests.support.totals import totals


def test_stores_when_on_and_creates_the_outbox(run, db_path):
    r = run("track", "command", "users.import", env=scenes.ON)
    assert (r.exit_code, r.output) == (
        0,
        "stored command users.import (+1); 1 pending for it now\n",
    )
    r = run("track", "command", "users.import", "--count", "3", env=scenes.ON)
    assert r.output == "stored command users.import (+3); 4 pending for it now\n"
    run("track", "api", "users.list", env=scenes.ON)
    run("track", "ui", "bulk_edit", "--count", "1000000", env=scenes.ON)
    assert totals(db_path) == {
        ("command", "users.import"): 4,
        ("api", "users.list"): 1,
        ("ui", "bulk_edit"): 1_000_000,
    }


def test_local_mode_stores_and_says_it_stays_here(run, db_path):
    r = run("track", "ui", "export_csv", env={"HELIOS_TELEMETRY_ENABLED": "local"})
    assert r.output.splitlines() == [
        "stored ui export_csv (+1); 1 pending for it now",
        "telemetry is local: it is kept here, never sent",
    ]
    assert totals(db_path) == {("ui", "export_csv"): 1}


def test_organisation_on_is_enough(run, db_path):
    run("enable")
    assert run("track", "command", "sync").exit_code == 0
    assert totals(db_path) == {("command", "sync"): 1}


@pytest.mark.parametrize(
    ("env", "setup", "message"),
    [
        ({}, None, "telemetry is off (telemetry is off until someone turns it on): nothing "
         "stored; `outbox enable` turns it on"),
        (scenes.ON, "disable", "telemetry is off (the organisation turned sharing off): nothing "
         "stored; `outbox enable` turns it on"),
        ({"DO_NOT_TRACK": "1", **scenes.ON}, "enable", "telemetry is off (DO_NOT_TRACK is set in "
         "the environment): nothing stored"),
        ({"HELIOS_TELEMETRY_ENABLED": "off"}, "enable", "telemetry is off (HELIOS_TELEMETRY_"
         "ENABLED is false in the environment): nothing stored"),
        ({"HELIOS_TELEMETRY_ENABLED": "perhaps"}, "enable", "telemetry is off (HELIOS_TELEMETRY_"
         "ENABLED='perhaps' is not understood, so telemetry is off; use true, false or local (or "
         "unset it)): nothing stored"),
    ],
)  # fmt: skip
def test_off_fails_loudly_and_stores_nothing(run, db_path, env, setup, message):
    if setup is not None:
        run(setup)
    r = run("track", "command", "sync", env=env)
    assert (r.exit_code, r.stderr) == (1, f"Error: {message}\n")
    if setup is None:
        assert not db_path.exists()  # off by default: nothing is created either
    else:
        assert totals(db_path) == {}


@pytest.mark.parametrize(
    "name", ["Users.List", "bob@example.com", "10.0.0.1", "users..list", "a" * 65, "9lives", ""]
)
def test_invalid_name_is_a_usage_error_with_the_rule(run, db_path, name):
    r = run("track", "api", name, env=scenes.ON)
    assert r.exit_code == 2
    assert (
        f"Invalid value for 'NAME': {name!r} is not a valid name: a name is lowercase segments "
        "of letters, digits and _ joined by '.', each starting with a letter, at most 64 "
        "characters in all (for example users.list, sync, bulk_edit)"
    ) in " ".join(r.stderr.split())
    assert not db_path.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["web", "sync"], "Invalid value for '{api|command|ui}'"),
        (["command", "sync", "--count", "0"], "0 is not in the range 1<=x<=1000000"),
        (["command", "sync", "--count", "1000001"], "1000001 is not in the range"),
        (["command"], "Missing argument 'NAME'"),
    ],
)
def test_bad_kind_and_count(run, db_path, args, fragment):
    r = run("track", *args, env=scenes.ON)
    assert r.exit_code == 2
    assert fragment in r.stderr
    assert not db_path.exists()
