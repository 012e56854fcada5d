"""``outbox export`` and ``outbox receipt``: a heartbeat carried by hand, marked by its receipt."""

from __future__ import annotations

import json
from pathlib import Path

from outbox import heartbeats, store
from outbox.contract import Export, Receipt
from outbox.store import Meta
from tests.cli import scenes
from tests.cli.conftest import INSTANCE
from tests.support.clock import T0


def receipt_for(exported: Export, *, status: str = "accepted", **changes: str) -> bytes:
    fields = {
        "heartbeat_id": exported.heartbeat_id,
        "instance_id": exported.instance_id,
        "payload_sha256": exported.payload_sha256,
        "received_at": "2026-11-25T12:00:00Z",
        **changes,
    }
    return Receipt(status=status, **fields).to_bytes()  # type: ignore[arg-type]


def test_export_seals_and_writes_the_frozen_bytes_privately(run, outbox, tmp_path: Path) -> None:
    outbox.instance()
    outbox.track_many([("api", "users.list", 4), ("command", "sync", 1)])
    target = tmp_path / "hb.json"
    r = run("export", "-o", target, env=scenes.ON)
    assert r.exit_code == 0, r.stderr
    exported = Export.from_bytes(target.read_bytes())
    assert target.stat().st_mode & 0o777 == 0o600  # it holds the credential
    with outbox.conn() as c:
        [hb] = heartbeats.history(c)
        secret = store.existing_secret(c)
        assert store.get_int(c, Meta.LAST_EXPORT_AT) == T0
    assert (hb.status, exported.heartbeat_id, exported.sequence) == ("pending", hb.id, 1)
    assert exported.payload == hb.payload and exported.payload_sha256 == hb.payload_sha256
    assert (exported.instance_id, exported.secret) == (INSTANCE, secret)
    assert json.loads(exported.payload)["api_usage"] == {"users.list": 4}
    assert r.stderr.startswith(f"sealed and exported heartbeat {hb.id[:8]} (sequence 1, ")
    # Exporting again before the receipt writes the same heartbeat, byte for byte.
    again = run("export", env=scenes.ON)
    assert again.exit_code == 0 and Export.from_bytes(again.stdout_bytes) == exported
    assert again.stderr.startswith(f"exported (again) heartbeat {hb.id[:8]} (sequence 1, ")


def test_export_refuses_while_sharing_is_off(run, outbox) -> None:
    outbox.track("api", "users.list")
    for env, reason in (
        ({}, "telemetry is off until someone turns it on"),
        ({"HELIOS_TELEMETRY_ENABLED": "local"}, "HELIOS_TELEMETRY_ENABLED=local"),
    ):
        r = run("export", env=env)
        assert r.exit_code == 1 and reason in r.stderr and r.stdout == ""
    with outbox.conn() as c:
        assert heartbeats.history(c) == []  # nothing sealed either


def test_export_refuses_a_version_the_collector_would_refuse(run, outbox, tmp_path: Path) -> None:
    """HELIOS_VERSION=latest would be a heartbeat the collector rejects for good: a
    configuration error (exit 2) before anything is sealed or written."""
    outbox.instance()
    outbox.track("api", "users.list", 4)
    target = tmp_path / "hb.json"
    r = run("export", "-o", target, env={**scenes.ON, "HELIOS_VERSION": "latest"})
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr == (
        "Error: HELIOS_VERSION='latest' is not a PEP 440 or semver version (1.4.2, "
        "2.0.0-rc.1); the collector would refuse every heartbeat: fix the variable\n"
    )
    assert not target.exists()
    with outbox.conn() as c:
        assert heartbeats.history(c) == []  # nothing sealed
        assert store.get(c, Meta.LAST_EXPORT_AT) is None


def test_nothing_to_export(run, outbox) -> None:
    outbox.instance()
    r = run("export", env=scenes.ON)
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == "nothing to export: no heartbeat is pending and no counts wait\n"


def test_a_matching_receipt_marks_it_delivered_once(run, outbox, tmp_path: Path) -> None:
    outbox.track("command", "sync", 3)
    exported = Export.from_bytes(run("export", env=scenes.ON).stdout_bytes)
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(receipt_for(exported))
    r = run("receipt", receipt)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == (
        f"heartbeat {exported.heartbeat_id[:8]} (sequence 1) marked delivered (the collector "
        'answered "accepted"); the next one can be exported\n'
    )
    with outbox.conn() as c:
        hb = heartbeats.get(c, exported.heartbeat_id)
    assert hb is not None and hb.status == "sent" and hb.attempts == 0
    assert json.loads(hb.receipt or "{}")["via"] == "import"
    twice = run("receipt", "--json", receipt)
    assert twice.exit_code == 0
    assert json.loads(twice.stdout) == {
        "heartbeat_id": exported.heartbeat_id,
        "sequence": 1,
        "status": "sent",
        "outcome": "already",
        "collector": "accepted",
    }
    outbox.track("command", "sync")
    nxt = Export.from_bytes(run("export", env=scenes.ON).stdout_bytes)
    assert nxt.sequence == 2 and json.loads(nxt.payload)["command_usage"] == {"sync": 1}


def test_a_receipt_for_something_else_changes_nothing(run, outbox, tmp_path: Path) -> None:
    outbox.instance()
    outbox.track("command", "sync")
    exported = Export.from_bytes(run("export", env=scenes.ON).stdout_bytes)
    receipt = tmp_path / "r.json"
    other = "9d0c6b0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
    cases = {
        "another instance": (
            receipt_for(exported, instance_id=other),
            f"the receipt is for instance {other}, not this outbox's ({INSTANCE})",
        ),
        "another heartbeat": (
            receipt_for(exported, heartbeat_id=other),
            f"no heartbeat {other} in this outbox",
        ),
        "other bytes": (
            receipt_for(exported, payload_sha256="0" * 64),
            "the receipt's payload_sha256 000000000000… is not the hash of heartbeat",
        ),
        "not a receipt": (exported.to_bytes(), "not a collector receipt"),
        "not JSON": (b"\x00garbage", "the file is not JSON"),
    }
    for case, (data, message) in cases.items():
        receipt.write_bytes(data)
        r = run("receipt", receipt)
        assert r.exit_code == 1, case
        assert message in r.stderr, (case, r.stderr)
    with outbox.conn() as c:
        hb = heartbeats.get(c, exported.heartbeat_id)
    assert hb is not None and hb.status == "pending"
    r = run("receipt", tmp_path / "missing.json")
    assert r.exit_code == 1 and "cannot read the receipt" in r.stderr


def test_export_refuses_while_a_worker_holds_the_outbox(run, outbox) -> None:
    """Sealing by hand while a worker compacts could seal counts it never read."""
    outbox.track("command", "sync")
    outbox.lease(4242, acquired_at=T0, expires_at=T0 + 600)  # on host helios-1
    r = run("export", env=scenes.ON)
    assert r.exit_code == 1
    assert r.stderr == (
        "Error: a worker (pid 4242 on helios-1) holds this outbox and delivers its "
        "heartbeats; stop it before exporting by hand, or let it send\n"
    )
    with outbox.conn() as c:
        assert heartbeats.history(c) == []
