"""Names and privacy: what may be recorded. (API names are made from route templates and
declared words: ``tests/web/test_naming.py``.)"""

from __future__ import annotations

import pytest

from outbox import Telemetry, is_valid_name
from outbox.contract import MAX_NAME_LENGTH
from tests.support.totals import totals

VALID = [
    "users.list",
    "import_users",
    "v1.users.get",
    "a",
    "sync",
    "x" * MAX_NAME_LENGTH,
    "facade.added",  # words of the letters a-f only are no hex id
    "checksum.sha256",
    "users.a1b2c3d",  # seven hex digits: too short to be an id
    "import_users_v2",
    "cache_decade_added",
    "build2024release",  # a digit run among letters is no hex id
    "deadbeefcafebabefacade",  # hex letters only, no digit
]

HOSTILE: list[object] = [
    "alice@example.com",
    "users/42",
    "users.42",
    "192.168.1.10",
    "db01.example.com",
    "build.internal",
    "nas.local",
    "10.0.0.1",
    "0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70",
    # hex ids that happen to start with a letter (found by tests/proof/test_hostile.py)
    "e31ea01ee1eedafe",
    "users.a1b2c3d4",
    "sessions.deadbeef0123456789abcdef.get",
    "c0b4f6c18c1d4e4f9a512d3c4b5a6f70",
    "jobs.job_59d20fa90f4b315048d3fe",
    "o9_e31ea01ee1eedafe_x",
    # ... or glued to letters inside a segment: 16+ hex characters in a row with a digit
    "q2.fdjeivwyt19gdd2fb1018178906ac1318950bdff48854",
    "user4f9c0e1234567890ab.get",
    "x" * (MAX_NAME_LENGTH + 1),
    "a" * 10_000,
    "Users.List",
    "users list",
    "users.",
    ".users",
    "users..list",
    "_users",
    "1users",
    "usérs",
    "users\x00",
    "users.list\n",
    "'; DROP TABLE events; --",
    "users.list' OR '1'='1",
    "",
    None,
    42,
    4.2,
    b"users.list",
    ["users.list"],
    {"name": "users.list"},
    True,
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_accepted(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: object) -> None:
    assert not is_valid_name(name)


def test_hostile_names_never_reach_the_table_and_are_counted(make_telemetry) -> None:
    t: Telemetry = make_telemetry()
    refused = HOSTILE
    for h in refused:
        for track in (t.track_api_call, t.track_command, t.track_ui_action):
            assert track(h) is False  # type: ignore[arg-type]
    assert t.track_api_call("users.list") is True
    with t.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM events")]
        dropped = dict(conn.execute("SELECT reason, pending FROM dropped"))
    assert names == ["users.list"]
    assert dropped["invalid_name"] == 3 * len(refused)
    assert totals(t.db_path) == {("api", "users.list"): 1}


@pytest.mark.parametrize("count", [0, -1, 1_000_001, 1.5, True, "3", None])
def test_bad_counts_are_refused_and_counted(make_telemetry, count: object) -> None:
    t = make_telemetry()
    assert t.track("api", "users.list", count) is False  # type: ignore[arg-type]
    assert t.track("nope", "users.list") is False  # type: ignore[arg-type]
    with t.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert (
            conn.execute("SELECT pending FROM dropped WHERE reason = 'invalid_name'").fetchone()[0]
            == 2
        )
