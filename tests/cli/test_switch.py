"""``outbox enable`` / ``outbox disable``: the organisation setting and its effect."""

from __future__ import annotations

from pathlib import Path

from outbox import db, store
from tests.cli import scenes
from tests.support.totals import totals


def org(path: Path) -> bool | None:
    c = db.connect(path, create=False, readonly=True)
    try:
        return store.org_enabled(c)
    finally:
        c.close()


def test_enable_creates_the_outbox_and_turns_telemetry_on(run, db_path):
    r = run("enable")
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        f"organisation setting: on (stored in {db_path})",
        "telemetry is on: usage counts are collected and sent",
    ]
    assert org(db_path) is True
    assert run("enable").output.splitlines()[1:] == [
        "telemetry is on: usage counts are collected and sent",
        "(it was already on)",
    ]


def test_disable_deletes_unsent_data_and_says_how_much(run, outbox, clock):
    scenes.busy(outbox, clock)  # 6 pending events, one heartbeat in flight
    r = run("disable", env=scenes.ON)
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        f"organisation setting: off (stored in {outbox.path})",
        "telemetry is off: nothing is collected or sent",
        "deleted unsent data: 6 events and 1 heartbeat waiting for delivery; nothing "
        "collected before now will be sent",
    ]
    assert org(outbox.path) is False
    assert totals(outbox.path) == {}  # the sent heartbeat's rows went too: it holds them
    assert outbox.heartbeat_statuses() == [(1, "sent")]
    assert run("disable").output.splitlines()[1:] == [
        "telemetry is off: nothing is collected or sent",
        "(it was already off)",
        "there was no unsent data to delete",
    ]


def test_locked_by_the_environment_stores_but_changes_nothing_effective(run, db_path):
    for env, reason in [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK is set in the environment"),
        (
            {"HELIOS_TELEMETRY_ENABLED": "false"},
            "HELIOS_TELEMETRY_ENABLED is false in the environment",
        ),
    ]:
        r = run("enable", env=env)
        assert r.exit_code == 0
        assert r.output.splitlines()[1:] == [
            "telemetry is off: nothing is collected or sent",
            f"the environment locks it off ({reason}): this command changes nothing "
            "effective; the stored choice applies once that is lifted",
        ]
        assert org(db_path) is True
    r = run("disable", env={"DO_NOT_TRACK": "1"})
    assert "the environment locks it off (DO_NOT_TRACK is set" in r.output
    assert org(db_path) is False


def test_local_keeps_it_local(run, db_path):
    r = run("enable", env={"HELIOS_TELEMETRY_ENABLED": "local"})
    assert r.output.splitlines()[1:] == [
        "telemetry is local: usage counts are collected and kept here, never sent",
        "HELIOS_TELEMETRY_ENABLED=local keeps it local: counts are shown here, never sent",
    ]


def test_enable_after_disable_under_an_env_default(run, db_path):
    run("disable", env=scenes.ON)
    r = run("enable", env=scenes.ON)
    assert r.output.splitlines()[1:] == ["telemetry is on: usage counts are collected and sent"]
