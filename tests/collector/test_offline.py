"""Offline sites (issue 15 point 4, the collector's side): an ``outbox export`` file in,
a receipt out, through ``outbox-collector import`` and ``POST /api/instances/import``.
Same validation, credential check and idempotency as the endpoint; on SQLite and
PostgreSQL. The export is made from a real sealed heartbeat of a real outbox."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.__main__ import main
from outbox import Telemetry, db, heartbeats, store
from outbox.contract import Export, Receipt, bearer
from tests.support.clock import FakeClock
from tests.support.collector import Collector


def sealed(tmp_path: Path, clock: FakeClock, name: str = "site") -> Export:
    """A real outbox's pending heartbeat, exported as ``outbox export`` would."""
    path = tmp_path / name / "telemetry.db"
    t = Telemetry(db_path=path, enabled=True, environ={}, clock=clock)
    t.track_command("sync")
    t.track_api_call("users.list")
    t.track_api_call("users.list")
    t.close()
    conn = db.connect(path)
    hb = heartbeats.commit_seal(
        conn,
        heartbeats.plan_seal(conn),
        heartbeat_id=str(uuid.uuid4()),
        now=int(clock()),
        version="1.4.2",
        edition="licensed",
    )
    creds = store.credentials(conn)
    conn.close()
    assert hb is not None
    return Export(
        heartbeat_id=hb.id,
        instance_id=creds.instance_id,
        sequence=1,
        payload=hb.payload,
        payload_sha256=hb.payload_sha256,
        secret=creds.secret,
    )


def run(db_target: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["import", "--db", db_target, *args])
    return result.exit_code, result.stdout, result.stderr


def test_import_prints_one_receipt_per_file_and_counts_once(
    collector: Collector, db_target: str, tmp_path: Path
) -> None:
    exports = [sealed(tmp_path, collector.clock, f"site{i}") for i in range(2)]
    files = []
    for i, e in enumerate(exports):
        files.append(tmp_path / f"heartbeat-{i}.json")
        files[-1].write_bytes(e.to_bytes())
    code, out, err = run(db_target, *map(str, files), "-o", str(tmp_path / "receipts"))
    assert (code, err) == (0, "")
    receipts = [Receipt.from_bytes(line.encode()) for line in out.splitlines()]
    assert [(r.heartbeat_id, r.instance_id, r.status, r.payload_sha256) for r in receipts] == [
        (e.heartbeat_id, e.instance_id, "accepted", e.payload_sha256) for e in exports
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.received_at) for r in receipts)
    for e in exports:
        written = tmp_path / "receipts" / f"{e.heartbeat_id}.receipt.json"
        assert Receipt.from_bytes(written.read_bytes()).status == "accepted"
    # Importing the same file again counts nothing again: a "duplicate" receipt.
    code, out, _ = run(db_target, str(files[0]))
    assert code == 0
    assert Receipt.from_bytes(out.encode()).status == "duplicate"
    doc = collector.insights(days=1)
    assert doc["totals"] == {"api": 4, "command": 2, "ui": 0}
    assert doc["heartbeats"]["received"] == 2


def test_a_file_for_another_instance_secret_is_refused(
    collector: Collector, db_target: str, tmp_path: Path
) -> None:
    e = sealed(tmp_path, collector.clock)
    # The instance is known already, under its real secret.
    r = collector.http.post(
        "/api/instances/import",
        content=e.to_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert Receipt.from_bytes(r.content).status == "accepted"
    forged = Export(**{**e.__dict__, "secret": "f" * 43})
    path = tmp_path / "forged.json"
    path.write_bytes(forged.to_bytes())
    code, out, err = run(db_target, str(path))
    assert (code, out) == (1, "")
    assert "registered with another secret; nothing was stored" in err
    assert collector.insights(days=1)["totals"] == {"api": 2, "command": 1, "ui": 0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(payload_sha256="0" * 64), "payload_sha256 does not match"),
        (lambda d: d.update(format="something-else"), "its format is not"),
        (lambda d: d.update(heartbeat_id=str(uuid.uuid4())), "heartbeat_id is not the one"),
        (lambda d: d.update(authorization=None), "carries no instance secret"),
    ],
    ids=["altered payload", "not an export", "ids differ", "no secret"],
)
def test_broken_files_are_refused_and_change_nothing(
    collector: Collector, db_target: str, tmp_path: Path, change: object, message: str
) -> None:
    doc = json.loads(sealed(tmp_path, collector.clock).to_bytes())
    change(doc)  # type: ignore[operator]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(db_target, str(path), str(tmp_path / "missing.json"))
    assert (code, out) == (1, "")
    assert message in err
    assert "missing.json: cannot read it" in err
    assert collector.insights(days=1)["heartbeats"]["received"] == 0


def test_post_import_answers_the_receipt(collector: Collector, tmp_path: Path) -> None:
    e = sealed(tmp_path, collector.clock)
    without = Export(**{**e.__dict__, "secret": None})
    url = "/api/instances/import"
    h = {"Content-Type": "application/json"}
    # No secret in the file and none in the header: 401, nothing stored.
    r = collector.http.post(url, content=without.to_bytes(), headers=h)
    assert (r.status_code, r.json()["field"]) == (401, "Authorization")
    # The header's secret is taken when the file has none.
    assert e.secret is not None
    r = collector.http.post(
        url, content=without.to_bytes(), headers={**h, "Authorization": bearer(e.secret)}
    )
    assert r.status_code == 200
    receipt = Receipt.from_bytes(r.content)
    assert (receipt.status, receipt.payload_sha256) == ("accepted", e.payload_sha256)
    assert receipt.received_at == "2026-11-25T10:00:00Z"
    again = collector.http.post(url, content=e.to_bytes(), headers=h)
    assert Receipt.from_bytes(again.content).status == "duplicate"
    # The endpoint itself sees the same heartbeat as a duplicate, too.
    r = collector.post(e.payload, Authorization=bearer(e.secret))
    assert r.json() == {"status": "duplicate", "payload_sha256": e.payload_sha256}
    assert collector.insights(days=1)["totals"] == {"api": 2, "command": 1, "ui": 0}
    bad = collector.http.post(url, content=b'{"format": "x"}', headers=h)
    assert bad.status_code == 400


def test_post_import_of_a_file_nested_too_deeply_is_400(collector: Collector) -> None:
    """Python's JSON parser gives up on deep nesting with a RecursionError: that is a file
    that is not an export (400), never the collector failing (500)."""
    deep = b'{"format": "helios-heartbeat-export", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = collector.http.post(
        "/api/instances/import", content=deep, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "is not JSON" in r.json()["error"]
    assert collector.insights(days=1)["heartbeats"]["received"] == 0
