"""``outbox purge``: dry run, confirmation, --all, --older-than, bytes reclaimed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outbox import db, maintenance, store
from outbox.cli.fmt import human_bytes
from tests.cli.conftest import HB

WOULD = "would delete 4 heartbeats of history (sent, rejected or local) and 10 event rows"


def rows(path: Path) -> int:
    c = sqlite3.connect(path)
    try:
        return int(c.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        c.close()


def test_dry_run_says_what_would_go_and_deletes_nothing(run, history):
    before = history.heartbeat_statuses()
    r = run("purge", "--dry-run")
    assert (r.exit_code, r.output) == (0, f"{WOULD}\n(dry run: nothing deleted)\n")
    assert history.heartbeat_statuses() == before
    assert rows(history.path) == 11


def test_sent_is_the_default_and_the_last_of_sent_and_all_wins(run, history):
    history.track("api", "users.list", 7)
    default = run("purge", "--dry-run").output
    assert run("purge", "--sent", "--dry-run").output == default
    assert (
        run("purge", "--sent", "--all", "--dry-run").output
        == run("purge", "--all", "--dry-run").output
    )
    assert run("purge", "--all", "--sent", "--dry-run").output == default
    assert "unsent" not in default and "unsent" in run("purge", "--all", "--dry-run").output


def test_declining_deletes_nothing(run, history, db_path):
    before = history.heartbeat_statuses()
    r = run("purge", input="n\n")
    assert r.exit_code == 1
    assert r.stdout == (
        f"Would delete 4 heartbeats of history (sent, rejected or local) and 10 event rows "
        f"from {db_path}. Go ahead? [y/N]: n\n"
    )
    assert r.stderr == "aborted: nothing deleted\n"
    assert history.heartbeat_statuses() == before
    # No answer at all (stdin closed, as in a script without --yes) is a no.
    r = run("purge", input="")
    assert (r.exit_code, r.stderr) == (1, "aborted: nothing deleted\n")
    assert history.heartbeat_statuses() == before


def test_confirming_deletes_sent_history_and_keeps_what_is_unsent(run, history):
    r = run("purge", input="y\n")
    assert r.exit_code == 0
    out = r.stdout.splitlines()
    assert out[1] == "deleted 4 heartbeats of history (sent, rejected or local) and 10 event rows"
    assert out[2].startswith("reclaimed ")
    assert history.heartbeat_statuses() == [(5, "pending")]
    assert rows(history.path) == 1  # the event of the pending heartbeat


def test_yes_skips_the_question_and_bytes_reclaimed_are_the_library_figure(
    run, outbox, clock, tmp_path
):
    for i in range(3000):
        outbox.track("api", f"route{i}.list")
    outbox.send(HB[0])
    # What the library reclaims on an identical copy is what the command must report.
    copy_path = tmp_path / "copy.db"
    src, dst = db.connect(outbox.path), sqlite3.connect(copy_path, isolation_level=None)
    src.backup(dst)
    src.close()
    expected = maintenance.purge(dst, now=int(clock()))
    dst.close()
    assert expected.bytes_reclaimed > 0
    before = maintenance.file_sizes(outbox.path)
    r = run("purge", "--yes")
    after = maintenance.file_sizes(outbox.path)
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        "deleted 1 heartbeat of history (sent, rejected or local) and 3000 event rows",
        f"reclaimed {human_bytes(expected.bytes_reclaimed)} ({expected.bytes_reclaimed} bytes); "
        f"the outbox is now {human_bytes(after.total)} (was {human_bytes(before.total)})",
    ]
    assert after.wal == 0  # checkpointed and truncated: the file really shrank
    assert after.total < before.total


def test_all_also_discards_unsent_data(run, history):
    history.track("api", "users.list", 7)
    would = (
        "would delete 4 heartbeats of history (sent, rejected or local) and 12 event rows; "
        "would discard unsent data: 7 events and 1 heartbeat waiting for delivery "
        "(never to be sent)"
    )
    assert run("purge", "--all", "--dry-run").output.splitlines()[0] == would
    r = run("purge", "--all", "--yes")
    assert r.output.splitlines()[0] == (
        "deleted 4 heartbeats of history (sent, rejected or local) and 12 event rows; "
        "discarded unsent data: 7 events and 1 heartbeat waiting for delivery (never to be sent)"
    )
    assert history.heartbeat_statuses() == []
    assert rows(history.path) == 0
    with history.conn() as c:
        assert store.pending_counters(c) == []
    assert run("purge", "--all").output == "nothing to purge\n"


@pytest.mark.parametrize(
    ("age", "heartbeats"),
    [("1d", 1), ("24h", 1), ("2h", 3), ("120m", 3), ("7200s", 3), ("1w", 0), ("2W", 0)],
)
def test_older_than(run, history, age, heartbeats):
    # now is 2026-11-26 11:13; sequences 1-3 settled on 11-25 at 10:01, 11:13, 11:13, 4 now.
    r = run("purge", "--older-than", age, "--dry-run")
    assert r.output.splitlines()[0] == (
        f"would delete {heartbeats} heartbeat{'' if heartbeats == 1 else 's'} of history "
        "(sent, rejected or local) and 10 event rows"
    )
    run("purge", "--older-than", age, "--yes")
    assert len(history.heartbeat_statuses()) == 5 - heartbeats


@pytest.mark.parametrize("age", ["30", "30x", "d", "-1d", "1.5d", ""])
def test_bad_duration_is_a_usage_error(run, history, age):
    r = run("purge", "--older-than", age)
    assert r.exit_code == 2
    assert (
        f"Invalid value for '--older-than': {age!r} is not a duration; use a whole number and "
        "a unit: s, m, h, d or w (for example 30d, 12h, 2w)"
    ) in " ".join(r.stderr.split())
    assert len(history.heartbeat_statuses()) == 5


def test_nothing_to_purge_and_missing_outbox(run, outbox, db_path):
    r = run("purge")
    assert (r.exit_code, r.output) == (0, f"nothing to purge: no outbox at {db_path} yet\n")
    assert not db_path.exists()
    outbox.track("command", "sync")
    assert run("purge", "--yes").output == "nothing to purge\n"
