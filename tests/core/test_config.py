"""Configuration: the on/off rule, what decided it, and that off means nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbox import Config, SettingsError, Telemetry
from outbox.config import DEFAULT_ENDPOINT, Problem, check_endpoint, decide, parse_enabled
from tests.support.totals import totals


@pytest.mark.parametrize(
    ("env", "dnt", "org", "mode", "source", "locked"),
    [
        (None, False, None, "off", "default", False),
        ("true", False, None, "on", "HELIOS_TELEMETRY_ENABLED", False),
        ("local", False, None, "local", "HELIOS_TELEMETRY_ENABLED", False),
        ("false", False, None, "off", "HELIOS_TELEMETRY_ENABLED", True),
        ("false", False, True, "off", "HELIOS_TELEMETRY_ENABLED", True),
        ("true", True, True, "off", "DO_NOT_TRACK", True),
        (None, True, None, "off", "DO_NOT_TRACK", True),
        (None, False, True, "on", "organization_setting", False),
        ("true", False, False, "off", "organization_setting", False),
        ("local", False, True, "local", "organization_setting", False),
        (None, False, False, "off", "organization_setting", False),
    ],
)
def test_decide_first_match_wins(env, dnt, org, mode, source, locked) -> None:
    d = decide(env, dnt, org)
    assert (d.mode, d.source, d.locked) == (mode, source, locked)
    # Only an explicit "off" is an opt-out that deletes: never the default.
    assert d.opt_out is (mode == "off" and source != "default")
    assert d.collecting is (mode != "off")
    assert d.sending is (mode == "on")
    assert d.reason


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, None),
        ("", None),
        ("true", "true"),
        ("1", "true"),
        ("YES", "true"),
        ("on", "true"),
        ("false", "false"),
        ("0", "false"),
        ("no", "false"),
        ("local", "local"),
        (" Local ", "local"),
    ],
)
def test_parse_enabled(raw, parsed) -> None:
    assert parse_enabled(raw) == parsed


def test_unknown_enabled_value_is_a_problem_naming_the_variable() -> None:
    found = parse_enabled("maybe")
    assert isinstance(found, Problem)
    assert found.variable == "HELIOS_TELEMETRY_ENABLED"
    assert found.message == (
        "HELIOS_TELEMETRY_ENABLED='maybe' is not understood, so telemetry is off; "
        "use true, false or local (or unset it)"
    )


def test_unknown_enabled_value_is_off_and_locked_but_no_opt_out() -> None:
    cfg = Config.from_env({"HELIOS_TELEMETRY_ENABLED": "maybe"})
    for org in (None, True, False):
        d = cfg.decision(org)
        assert (d.mode, d.source, d.locked) == ("off", "HELIOS_TELEMETRY_ENABLED", True)
        assert d.opt_out is False  # a typo never deletes anything
        assert d.reason == cfg.problems[0].message
    assert cfg.locked_off and cfg.assumed == "false"


def test_config_from_env_defaults(tmp_path: Path) -> None:
    c = Config.from_env({"HOME": str(tmp_path)})
    assert c.db_path == tmp_path / ".local/share/helios/telemetry.db"
    assert (c.enabled, c.do_not_track, c.endpoint, c.edition, c.problems) == (
        None,
        False,
        DEFAULT_ENDPOINT,
        "community",
        (),
    )


def test_config_from_env_reads_every_variable(tmp_path: Path) -> None:
    c = Config.from_env(
        {
            "HELIOS_TELEMETRY_DB": str(tmp_path / "x.db"),
            "HELIOS_TELEMETRY_ENABLED": "local",
            "DO_NOT_TRACK": "1",
            "HELIOS_TELEMETRY_ENDPOINT": "http://127.0.0.1:9/api/instances/heartbeat",
            "HELIOS_EDITION": "licensed",
            "HELIOS_VERSION": "1.4.2",
        }
    )
    assert c == Config(
        tmp_path / "x.db",
        "local",
        True,
        "http://127.0.0.1:9/api/instances/heartbeat",
        "licensed",
        "1.4.2",
    )
    assert c.locked_off


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HELIOS_EDITION", "enterprise", "HELIOS_EDITION='enterprise'.*community.*licensed"),
        ("HELIOS_TELEMETRY_ENDPOINT", "http://example.com/hb", "only https://"),
        ("HELIOS_TELEMETRY_ENDPOINT", "ftp://example.com/hb", "not an http"),
        ("HELIOS_TELEMETRY_ENABLED", "sometimes", "true, false or local"),
    ],
)
def test_bad_values_are_kept_as_problems_and_required_ones_raise(variable, value, message) -> None:
    cfg = Config.from_env({variable: value})  # never raises
    assert [p.variable for p in cfg.problems] == [variable]
    with pytest.raises(SettingsError, match=message):
        cfg.require(variable)
    assert cfg.require("SOMETHING_ELSE") is cfg


def test_an_endpoint_option_is_named_as_the_option() -> None:
    cfg = Config.from_env({}, endpoint="http://example.com/hb")
    with pytest.raises(SettingsError, match=r"^--endpoint http://example.com/hb is plain http"):
        cfg.require("--endpoint")


@pytest.mark.parametrize(
    "url",
    [
        "https://helios.example/api",
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]:9/x",
        "http://127.5.6.7/x",
    ],
)
def test_endpoint_https_or_loopback(url: str) -> None:
    assert check_endpoint(url) == url


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"HELIOS_TELEMETRY_ENABLED": "false"},
        {"DO_NOT_TRACK": "1"},
        {"HELIOS_TELEMETRY_ENABLED": "true", "DO_NOT_TRACK": "1"},
        {"HELIOS_TELEMETRY_ENABLED": "bogus"},
    ],
    ids=["unset", "explicit-false", "do-not-track", "true-but-do-not-track", "bad-value"],
)
def test_disabled_writes_nothing(db_path: Path, clock, environ) -> None:
    t = Telemetry(db_path=db_path, environ=environ, clock=clock)
    assert t.track_api_call("users.list") is False
    assert t.track_command("sync") is False
    assert t.track_ui_action("bulk_edit") is False
    t.track_ui_action("alice@example.com")
    assert not db_path.exists()
    assert not db_path.parent.exists()
    assert t.enabled is False
    assert t.mode == "off"


def test_disabled_by_variable_writes_nothing_even_when_the_organisation_said_on(
    db_path: Path, clock
) -> None:
    Telemetry(db_path=db_path, environ={}, clock=clock).set_enabled(True)
    size = db_path.stat().st_size
    for environ in ({"HELIOS_TELEMETRY_ENABLED": "false"}, {"DO_NOT_TRACK": "1"}):
        t = Telemetry(db_path=db_path, environ=environ, clock=clock)
        assert t.track_api_call("users.list") is False
        assert t.decision().locked
    t = Telemetry(db_path=db_path, environ={}, clock=clock)
    with t.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert db_path.stat().st_size == size


def test_local_mode_writes(db_path: Path, clock) -> None:
    t = Telemetry(db_path=db_path, environ={"HELIOS_TELEMETRY_ENABLED": "local"}, clock=clock)
    assert t.track_api_call("users.list") is True
    assert t.mode == "local" and t.enabled is True
    d = t.decision()
    assert (d.source, d.sending) == ("HELIOS_TELEMETRY_ENABLED", False)


def test_enabled_argument_overrides_the_variable_but_not_do_not_track(db_path: Path) -> None:
    assert Telemetry(db_path=db_path, enabled=True, environ={}).mode == "on"
    assert Telemetry(db_path=db_path, enabled="local", environ={}).mode == "local"
    assert (
        Telemetry(db_path=db_path, enabled=False, environ={"HELIOS_TELEMETRY_ENABLED": "true"}).mode
        == "off"
    )
    t = Telemetry(db_path=db_path, enabled=True, environ={"DO_NOT_TRACK": "1"})
    assert t.track_api_call("users.list") is False and t.mode == "off"


def test_organisation_setting_turns_tracking_on_and_off(db_path: Path, clock) -> None:
    t = Telemetry(db_path=db_path, environ={}, clock=clock)
    assert t.track_api_call("users.list") is False  # default off, no file
    decision, discarded = t.set_enabled(True)
    assert (decision.mode, decision.source) == ("on", "organization_setting")
    assert t.track_api_call("users.list") is True
    assert t.track_api_call("users.list") is True
    decision, discarded = t.set_enabled(False)
    assert decision.mode == "off"
    assert (discarded.events, discarded.heartbeats) == (2, 0)
    # The same process keeps its connection: the stored choice is read by the insert itself.
    assert t.track_api_call("users.list") is False
    with t.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_environment_is_read_on_first_use_not_at_construction(monkeypatch, db_path: Path) -> None:
    t = Telemetry(db_path=db_path)
    monkeypatch.setenv("HELIOS_TELEMETRY_ENABLED", "true")
    assert t.track_api_call("users.list") is True


def test_off_by_default_sees_an_organisation_choice_made_elsewhere_at_once(
    db_path: Path,
) -> None:
    """Another process (a second web worker, ``outbox enable``) creates the outbox when an
    administrator switches sharing on: this process's very next call is counted."""
    t = Telemetry(db_path=db_path, environ={})
    assert t.track_api_call("users.list") is False  # no outbox: off, nothing created
    assert not db_path.exists()
    Telemetry(db_path=db_path, environ={}).set_enabled(True)  # e.g. `outbox enable`
    assert t.track_api_call("users.list") is True
    assert totals(db_path) == {("api", "users.list"): 1}


@pytest.mark.parametrize("value", ["1.4.2", "2.0.0-rc.1", "1.5.post1", "0+unknown", "2.0rc1"])
def test_a_version_the_collector_accepts(value: str) -> None:
    assert Config.from_env({"HELIOS_VERSION": value}).problems == ()


@pytest.mark.parametrize("value", ["v1.4", "1.4.2 beta", "latest", "1.4.2; rm -rf", "x" * 70])
def test_a_version_the_collector_would_refuse_stops_the_worker_not_the_app(value: str) -> None:
    """A free-form HELIOS_VERSION would make every heartbeat a 422 (rejected for good):
    said before anything is sealed, the same way as every other bad value."""
    cfg = Config.from_env({"HELIOS_VERSION": value})
    assert [p.variable for p in cfg.problems] == ["HELIOS_VERSION"]
    with pytest.raises(SettingsError, match="is not a PEP 440 or semver version"):
        cfg.require("HELIOS_VERSION")
    assert cfg.decision(True).mode == "on"  # track calls are not affected
