"""A site without a network to the collector, end to end with the real commands:
``outbox export`` → ``outbox-collector import`` → ``outbox receipt``. Exactly once holds:
importing twice counts once, and a receipt for another heartbeat is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outbox import Telemetry, db, heartbeats
from outbox.contract import Receipt
from tests.support.env import child_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(
    *args: str, env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def collector_totals(path: Path, instance_id: str) -> dict[str, int]:
    """What the collector holds for one instance (the operator's view)."""
    out = subprocess.run(
        [str(BIN / "outbox-collector"), "instances", "--db", str(path), "--json", instance_id],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return {k: int(v) for k, v in json.loads(out)["totals"].items()}


def test_export_import_receipt_round_trip(tmp_path: Path) -> None:
    outbox_path = tmp_path / "site" / "telemetry.db"
    collector_db = tmp_path / "project" / "collector.db"
    env = child_env(HELIOS_TELEMETRY_DB=str(outbox_path), HELIOS_VERSION="1.4.2")
    t = Telemetry(db_path=outbox_path, environ={})
    t.set_enabled(True)  # the organisation turned sharing on; no worker, no network
    for _ in range(7):
        assert t.track_api_call("users.list")
    assert t.track_command("sync", 2)

    first = tmp_path / "hb1.json"
    r = run("outbox", "export", "-o", str(first), env=env)
    assert r.returncode == 0, r.stderr
    r = run("outbox-collector", "import", "--db", str(collector_db), str(first), env=env)
    assert r.returncode == 0, r.stderr
    receipt = Receipt.from_bytes(r.stdout)
    assert receipt.status == "accepted"
    # Imported twice (a second upload of the same file): one receipt, counted once.
    again = run("outbox-collector", "import", "--db", str(collector_db), str(first), env=env)
    assert again.returncode == 0 and Receipt.from_bytes(again.stdout).status == "duplicate"
    assert collector_totals(collector_db, receipt.instance_id) == {"api": 7, "command": 2}

    # The receipt goes back to the site on standard input and marks the heartbeat sent.
    done = run("outbox", "receipt", "-", env=env, stdin=r.stdout)
    assert done.returncode == 0, done.stderr
    conn = db.connect(outbox_path)
    try:
        [hb] = heartbeats.history(conn)
        assert (hb.id, hb.status) == (receipt.heartbeat_id, "sent")
    finally:
        conn.close()

    # The next export is a new heartbeat; the old receipt does not mark it.
    assert t.track_api_call("users.list")
    second = tmp_path / "hb2.json"
    assert run("outbox", "export", "-o", str(second), env=env).returncode == 0
    stale = run("outbox", "receipt", "-", env=env, stdin=r.stdout)
    assert stale.returncode == 0 and b"was already delivered" in stale.stdout
    r2 = run("outbox-collector", "import", "--db", str(collector_db), str(second), env=env)
    assert r2.returncode == 0, r2.stderr
    assert run("outbox", "receipt", "-", env=env, stdin=r2.stdout).returncode == 0
    assert collector_totals(collector_db, receipt.instance_id) == {"api": 8, "command": 2}

    # A receipt of another site's heartbeat changes nothing here.
    other_path = tmp_path / "other" / "telemetry.db"
    other = Telemetry(db_path=other_path, environ={})
    other.set_enabled(True)
    assert other.track_api_call("users.list")
    other_env = child_env(HELIOS_TELEMETRY_DB=str(other_path), HELIOS_VERSION="1.4.2")
    third = tmp_path / "hb3.json"
    assert run("outbox", "export", "-o", str(third), env=other_env).returncode == 0
    r3 = run("outbox-collector", "import", "--db", str(collector_db), str(third), env=env)
    refused = run("outbox", "receipt", "-", env=env, stdin=r3.stdout)
    assert refused.returncode == 1 and b"it was made for another Helios" in refused.stderr
    conn = db.connect(outbox_path)
    try:
        assert [h.status for h in heartbeats.history(conn)] == ["sent", "sent"]
    finally:
        conn.close()
