"""``outbox show``: derived counters, pending and in flight."""

from __future__ import annotations

import json

from tests.cli import scenes
from tests.cli.conftest import HB


def test_table_of_pending_and_in_flight(run, outbox, clock):
    scenes.busy(outbox, clock)
    r = run("show")
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        "kind     name        pending  in flight",
        "api      users.list        0          5",
        "command  deploy            4          0",
        "ui       bulk_edit         1          2",
        "ui       export_csv        1          0",
        "",
        "total                      6          7",
        "",
        "in flight: heartbeat 1a2b3c02 (sequence 2), sealed 2026-11-25 11:01 UTC",
    ]


def test_kind_filter(run, outbox, clock):
    scenes.busy(outbox, clock)
    assert run("show", "--kind", "ui").output.splitlines()[:5] == [
        "kind   name        pending  in flight",
        "ui     bulk_edit         1          2",
        "ui     export_csv        1          0",
        "",
        "total                    2          2",
    ]
    assert run("show", "--kind", "web").exit_code == 2


def test_json_shape(run, outbox, clock):
    scenes.busy(outbox, clock)
    r = run("show", "--json", "--kind", "api")
    assert json.loads(r.stdout) == {
        "in_flight_heartbeat": HB[1],
        "counters": [{"kind": "api", "name": "users.list", "pending": 0, "in_flight": 5}],
        "totals": {"pending": 0, "in_flight": 5},
    }
    doc = json.loads(run("show", "--json").stdout)
    assert [(c["kind"], c["name"], c["pending"], c["in_flight"]) for c in doc["counters"]] == [
        ("api", "users.list", 0, 5),
        ("command", "deploy", 4, 0),
        ("ui", "bulk_edit", 1, 2),
        ("ui", "export_csv", 1, 0),
    ]
    assert doc["totals"] == {"pending": 6, "in_flight": 7}


def test_pending_only_and_nothing_at_all(run, outbox):
    outbox.track("command", "sync", 3)
    assert run("show").output.splitlines() == [
        "kind     name  pending  in flight",
        "command  sync        3          0",
        "",
        "total                3          0",
    ]
    assert run("show", "--kind", "api").output == "no api events pending and none in flight\n"


def test_long_names_fit_80_columns_in_text_and_stay_whole_in_json(run, outbox):
    long = "a" * 30 + "." + "b" * 33  # 64 characters, the longest name allowed
    outbox.track("api", long, 2)
    lines = run("show").output.splitlines()
    assert max(len(line) for line in lines) == 80
    assert lines[1] == "api    " + "a" * 30 + "." + "b" * 19 + "...        2          0"
    assert json.loads(run("show", "--json").stdout)["counters"][0]["name"] == long


def test_missing_outbox(run, db_path):
    r = run("show")
    assert (r.exit_code, r.output) == (
        0,
        f"no outbox at {db_path} yet: telemetry has not collected anything\n",
    )
    assert json.loads(run("show", "--json").stdout) == {
        "in_flight_heartbeat": None,
        "counters": [],
        "totals": {"pending": 0, "in_flight": 0},
    }
    assert not db_path.exists()
