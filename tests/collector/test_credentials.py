"""Instance credentials (issue 14, finding 2): a forged heartbeat, read or forget is 401
and changes nothing; the first accepted heartbeat binds the secret (trust on first use).
On SQLite and PostgreSQL, through a real server."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from collector import Storage, create_app
from collector.schema import instance_heartbeats, instances, name_instances, receipt_days
from collector.server import serve_in_thread
from collector.validate import parse
from outbox.contract import bearer, secret_hash
from tests.collector.payloads import IID, IID2, MIX, auth, body, secret_for, totals
from tests.support.collector import Collector

FORGER = {"Authorization": bearer("forged-" + "x" * 40)}


def stored(c: Collector) -> dict[str, int]:
    def q(conn: sa.Connection) -> dict[str, int]:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (instance_heartbeats, instances, name_instances)
        }

    return c.storage.read(q)


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer short", "Bearer " + "x" * 200, "x" * 50],
)
def test_a_heartbeat_without_a_well_formed_secret_is_401(
    refusing: Collector, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = refusing.post(body(), signed=False, **headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"] == 'Bearer realm="helios-telemetry"'
    assert r.json() == {
        "error": "send the instance secret as Authorization: Bearer <secret> (the outbox's "
        "worker and `outbox forget` do); nothing was read or stored",
        "field": "Authorization",
    }
    assert stored(refusing) == {"instance_heartbeats": 0, "instances": 0, "name_instances": 0}


def test_a_forged_heartbeat_is_401_and_changes_nothing(collector: Collector) -> None:
    c = collector
    assert c.post(body(sequence=1)).json()["status"] == "accepted"
    before = (c.insights(days=7), stored(c), c.instance(IID).json())
    # The finding: a forged sequence 500 and version 9.9.9 in the instance's name.
    forged = c.post(body(sequence=500, version="9.9.9"), **FORGER)
    assert forged.status_code == 401
    assert forged.json()["field"] == "Authorization"
    assert "registered with another secret" in forged.json()["error"]
    info = c.instance(IID).json()
    assert (info["last_sequence"], info["missing"], info["version"]) == (1, 0, "1.4.2")
    assert (c.insights(days=7), stored(c), info) == before
    # The real instance goes on.
    assert c.post(body(sequence=2)).json()["status"] == "accepted"
    assert c.insights(days=7)["totals"] == {k: 2 * v for k, v in totals(MIX).items()}


def test_a_resent_body_with_another_secret_is_401_not_duplicate(collector: Collector) -> None:
    b = body()
    collector.post(b)
    assert collector.post(b, **FORGER).status_code == 401
    assert collector.post(b).json()["status"] == "duplicate"


def test_reads_and_forgets_need_the_instance_secret(collector: Collector) -> None:
    c = collector
    c.post(body())
    before = (c.insights(days=7), stored(c))
    for method in ("GET", "DELETE"):
        bare = c.http.request(method, f"/api/instances/{IID}")
        assert bare.status_code == 401
        assert bare.json()["field"] == "Authorization"
        wrong = c.http.request(method, f"/api/instances/{IID}", headers=FORGER)
        assert wrong.status_code == 401
        assert "another secret" in wrong.json()["error"]
        assert (c.insights(days=7), stored(c)) == before
    # An unknown instance: 404 with a secret, 401 without one (nothing is looked up).
    assert c.instance(IID2).status_code == 404
    assert c.http.get(f"/api/instances/{IID2}").status_code == 401
    assert c.instance(IID).json()["totals"] == totals(MIX)
    assert c.forget(IID).status_code == 200
    assert c.insights(days=7)["totals"] == {"api": 0, "command": 0, "ui": 0}


def test_only_the_hash_of_the_secret_is_stored(collector: Collector, db_target: str) -> None:
    collector.post(body())
    hashes = collector.storage.read(
        lambda conn: conn.execute(sa.select(instances.c.secret_hash)).scalars().all()
    )
    assert hashes == [secret_hash(secret_for(IID))]
    if "://" not in db_target:
        collector.storage.close()
        raw = b"".join(p.read_bytes() for p in Path(db_target).parent.glob("collector.db*"))
        assert secret_for(IID).encode() not in raw


def test_two_secrets_racing_for_a_new_instance_bind_exactly_one(collector: Collector) -> None:
    secrets = {"Authorization": bearer("a" * 43)}, {"Authorization": bearer("b" * 43)}

    def send(i: int) -> tuple[int, int]:
        r = collector.post(body(sequence=i + 1), **secrets[i % 2])
        return i % 2, r.status_code

    with ThreadPoolExecutor(16) as pool:
        answers = Counter(pool.map(send, range(64)))
    winner = 0 if answers[(0, 200)] else 1
    assert answers == {(winner, 200): 32, (1 - winner, 401): 32}
    assert stored(collector)["instance_heartbeats"] == 32
    assert collector.insights(days=7)["totals"] == {k: 32 * v for k, v in totals(MIX).items()}


def test_the_database_files_are_private(tmp_path: Path) -> None:
    """SQLite only (PostgreSQL keeps its own files): the database, its -wal and -shm
    hold instance ids and credential hashes; the writers' lock file is private too."""
    path = tmp_path / "collector" / "collector.db"
    storage = Storage(path)
    with serve_in_thread(create_app(storage)) as running:
        r = httpx.post(
            f"{running.url}/api/instances/heartbeat",
            content=body(),
            headers={"Content-Type": "application/json", **auth(IID)},
        )
        assert r.json()["status"] == "accepted"
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("*")}
    storage.close()
    assert modes == dict.fromkeys(
        ["collector.db", "collector.db-wal", "collector.db-shm", "collector.db-writer.lock"], 0o600
    )
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # the folder it created


def test_existing_files_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Storage(path).close()
    for p in tmp_path.glob("old.db*"):
        os.chmod(p, 0o644)
    Storage(path).close()
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("old.db*")} == {0o600}


def downgrade_to_version_1(storage: Storage) -> None:
    """What a database made before credentials looks like: no secret_hash column, no
    name_instances table, none of version 3's rollups, schema version 1."""

    def go(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE instances DROP COLUMN secret_hash"))
        conn.execute(sa.text("DROP TABLE name_instances"))
        for table in ("metric_months", "day_totals", "receipt_days", "instance_days"):
            conn.execute(sa.text(f"DROP TABLE {table}"))
        for column in ("starts", "ends"):
            conn.execute(sa.text(f"ALTER TABLE aggregated_metrics DROP COLUMN {column}"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        conn.execute(sa.text("INSERT INTO schema_version VALUES (1, 0)"))

    storage.write(go)


def test_a_database_from_before_credentials_binds_on_the_next_heartbeat(
    storage: Storage, serve: Callable[..., Collector]
) -> None:
    storage.migrate(now=0)
    legacy = dataclasses.replace(parse(body(sequence=1)), credential="x" * 64)
    assert storage.ingest([legacy], now=1)[0].status == "accepted"
    downgrade_to_version_1(storage)
    assert storage.migrate(now=2) == 1
    assert storage.read(lambda c: c.execute(sa.select(instances.c.secret_hash)).scalar()) is None
    c = serve(min_instances=1)
    # No secret bound yet: reads are refused, whatever the secret.
    r = c.instance(IID)
    assert r.status_code == 401
    assert "has none yet" in r.json()["error"]
    # The name spans were rebuilt from the stored body, and the rollups from them.
    assert [n["instances"] for n in c.insights(days=7)["names"]["api"]] == [1, 1]
    receipts = storage.read(lambda c: c.execute(sa.select(receipt_days)).all())
    assert [tuple(r) for r in receipts] == [("1970-01-01", 1)]  # received at now=1
    # Its next heartbeat binds the secret it brings.
    assert c.post(body(sequence=2)).json()["status"] == "accepted"
    assert c.instance(IID).json()["heartbeats"] == 2
    assert c.post(body(sequence=3), **FORGER).status_code == 401
    assert c.insights(days=7)["totals"] == {k: 2 * v for k, v in totals(MIX).items()}


def test_the_secret_of_one_instance_opens_no_other(collector: Collector) -> None:
    collector.post(body(instance_id=IID))
    collector.post(body(instance_id=IID2))
    assert collector.instance(IID2, **auth(IID)).status_code == 401
    assert collector.forget(IID2, **auth(IID)).status_code == 401
    assert collector.instance(IID2).status_code == 200


def test_in_one_batch_the_first_accepted_heartbeat_binds(storage: Storage) -> None:
    """Heartbeats of a new instance with two secrets stored in one transaction (what the
    group commit does under load): the first one binds, the other secret's are refused
    and leave nothing, even a row inserted before the binding was known."""
    storage.migrate(now=0)
    one, two = secret_hash("a" * 43), secret_hash("b" * 43)
    batch = [
        dataclasses.replace(parse(body(sequence=s)), credential=c)
        for s, c in ((1, one), (2, two), (3, one), (4, two))
    ]
    outcomes = storage.ingest(batch, now=1)
    assert [o.status for o in outcomes] == ["accepted", "unauthorized", "accepted", "unauthorized"]
    info = storage.instance(IID, credential=one)
    assert info is not None
    assert (info.heartbeats, info.last_sequence) == (2, 3)
    assert info.totals == {k: 2 * v for k, v in totals(MIX).items()}
    assert (
        storage.read(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(instance_heartbeats))
        ).scalar_one()
        == 2
    )
