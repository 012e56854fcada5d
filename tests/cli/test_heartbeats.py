"""``outbox heartbeats``: the history, its filters, its JSON, and stored bytes by id."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import HB


def test_table(run, history):
    r = run("heartbeats")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines == [
        "seq  id        status    tries  period (UTC)              settled (UTC)",
        "  5  1a2b3c05  pending       1  2026-11-26 11:13 - 11:13  -",
        "     last error: ConnectError: [Errno 111] Connection refused",
        "  4  1a2b3c04  local         0  2026-11-26 11:13 - 11:13  11-26 11:13",
        "  3  1a2b3c03  rejected      1  2026-11-25 11:11 - 11:13  11-25 11:13",
        "     last error: HTTP 422 " + "x" * 51 + "...",
        "  2  1a2b3c02  sent          3  2026-11-25 11:01 - 11:01  11-25 11:13",
        "  1  1a2b3c01  sent          1  2026-11-25 10:00 - 10:00  11-25 10:01",
    ]
    assert max(len(line) for line in lines) == 80


def test_status_and_limit(run, history):
    lines = run("heartbeats", "--status", "sent").output.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [
        ["2", "1a2b3c02", "sent"],
        ["1", "1a2b3c01", "sent"],
    ]
    r = run("heartbeats", "--limit", "2")
    rows = [line for line in r.output.splitlines()[1:] if not line.startswith(" " * 5)]
    assert [line.split()[0] for line in rows] == ["5", "4", "(the"]
    assert r.output.splitlines()[-1] == "(the newest 2 heartbeats; --limit shows more)"
    assert run("heartbeats", "--status", "queued").exit_code == 2
    assert run("heartbeats", "--limit", "0").exit_code == 2
    assert run("heartbeats", "--status", "rejected", "--limit", "1").output.splitlines()[-1] == (
        "     last error: HTTP 422 " + "x" * 51 + "..."
    )


def test_json_shape(run, history):
    r = run("heartbeats", "--json", "--limit", "2", "--status", "sent")
    doc = json.loads(r.stdout)
    assert doc["more"] is False
    with history.conn() as c:
        from outbox import heartbeats

        two = heartbeats.get(c, HB[1])
    assert two is not None
    assert doc["heartbeats"][0] == {
        "sequence": 2,
        "id": HB[1],
        "status": "sent",
        "attempts": 3,
        "period_start": "2026-11-25T11:01:00Z",
        "period_end": "2026-11-25T11:01:00Z",
        "sealed_at": "2026-11-25T11:01:00Z",
        "last_attempt_at": "2026-11-25T11:13:00Z",
        "settled_at": "2026-11-25T11:13:00Z",
        "last_error": None,
        "receipt": {"status": "duplicate"},
        "payload_sha256": two.payload_sha256,
        "payload_bytes": len(two.payload),
    }
    assert [h["sequence"] for h in doc["heartbeats"]] == [2, 1]
    doc = json.loads(run("heartbeats", "--json", "--limit", "4").stdout)
    assert ([h["status"] for h in doc["heartbeats"]], doc["more"]) == (
        ["pending", "local", "rejected", "sent"],
        True,
    )


@pytest.mark.parametrize("given", [HB[2], HB[2][:8], HB[2][:20]])
def test_id_prints_the_stored_bytes_exactly(run, history, given):
    with history.conn() as c:
        from outbox import heartbeats

        stored = heartbeats.get(c, HB[2])
    assert stored is not None
    r = run("heartbeats", "--id", given)
    assert r.exit_code == 0
    assert r.stdout_bytes == stored.payload  # no newline added, nothing re-encoded


def test_id_errors(run, history, db_path):
    r = run("heartbeats", "--id", "ffffffff")
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: no heartbeat with id 'ffffffff' in {db_path}; `outbox heartbeats` lists them\n"
    )
    r = run("heartbeats", "--id", "1a2b3c0")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: '1a2b3c0' starts more than one heartbeat id (")
    for other in (["--json"], ["--status", "sent"], ["--limit", "3"]):
        r = run("heartbeats", "--id", HB[0], *other)
        assert r.exit_code == 2
        assert f"--id prints one payload; it does not go with {other[0]}" in r.stderr


def test_empty_and_missing(run, outbox, db_path):
    r = run("heartbeats")
    assert (r.exit_code, r.output) == (
        0,
        f"no outbox at {db_path} yet: telemetry has not collected anything\n",
    )
    assert json.loads(run("heartbeats", "--json").stdout) == {"heartbeats": [], "more": False}
    r = run("heartbeats", "--id", HB[0])
    assert r.exit_code == 1
    assert "telemetry has not collected anything" in r.stderr
    assert not db_path.exists()
    outbox.track("command", "sync")
    assert run("heartbeats").output == "no heartbeats sealed yet\n"
    assert run("heartbeats", "--status", "rejected").output == "no rejected heartbeats\n"
