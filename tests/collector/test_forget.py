"""``DELETE /api/instances/{instance_id}``: an instance's data goes, everyone else's stays exact."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa

from collector.schema import (
    aggregated_metrics,
    instance_heartbeats,
    instances,
    sequence_gaps,
)
from tests.collector.payloads import DAY, IID, IID2, MIX, auth, body, totals
from tests.support.collector import Collector

OTHER = {("api", "users.list", DAY): 4, ("ui", "export_csv", DAY): 9}


def rows_of(c: Collector, iid: str) -> dict[str, int]:
    def q(conn: sa.Connection) -> dict[str, int]:
        out = {}
        for t in (instance_heartbeats, instances, sequence_gaps):
            n = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.instance_id == iid)
            ).scalar_one()
            out[t.name] = int(n)
        return out

    return c.storage.read(q)


def aggregate_rows(c: Collector) -> dict[tuple[str, str, str], int]:
    a = aggregated_metrics

    def q(conn: sa.Connection) -> dict[tuple[str, str, str], int]:
        return {
            (k, n, d): int(c)
            for d, k, n, c in conn.execute(sa.select(a.c.day, a.c.kind, a.c.name, a.c["count"]))
        }

    return c.storage.read(q)


def test_forget_removes_one_instance_and_subtracts_exactly_its_counts(collector: Collector) -> None:
    c = collector
    c.post(body(sequence=1, dropped={"invalid_name": 2}))
    c.post(body(sequence=3))  # a gap at 2
    c.post(body(OTHER, instance_id=IID2, dropped={"invalid_name": 5}))
    before = c.insights(days=7)
    assert before["totals"] == {k: 2 * v + totals(OTHER)[k] for k, v in totals(MIX).items()}

    r = c.forget(IID)
    assert r.status_code == 200
    assert r.json() == {
        "status": "forgotten",
        "instance_id": IID,
        "heartbeats": 2,
        "metric_rows": 6,  # five (day, kind, name) rows and one drop reason
        "counts": 2 * sum(MIX.values()),
    }
    after = c.insights(days=7)
    assert after["totals"] == totals(OTHER)
    assert after["dropped"] == {"invalid_name": 5}
    assert after["instances"]["active_7d"] == 1
    assert after["heartbeats"] == {"received": 1, "missing": 0}
    # Rows that only the forgotten instance had are gone, not left at zero.
    assert aggregate_rows(c) == {**OTHER, ("dropped", "invalid_name", DAY): 5}
    assert rows_of(c, IID) == {
        "instance_heartbeats": 0,
        "instances": 0,
        "sequence_gaps": 0,
    }
    assert rows_of(c, IID2)["instance_heartbeats"] == 1
    assert c.instance(IID).status_code == 404


def test_forget_unknown_instance_and_a_malformed_id_are_404(collector: Collector) -> None:
    c = collector
    c.post(body(instance_id=IID2))
    r = c.forget(IID)
    assert r.status_code == 404
    assert "error" in r.json()
    bad = c.http.delete("/api/instances/alice@example.com")
    assert bad.status_code == 404
    assert c.insights(days=7)["totals"] == totals(MIX)
    # Upper case is the same UUID.
    assert c.forget(IID2.upper()).status_code == 200
    assert c.insights(days=7)["totals"] == {"api": 0, "command": 0, "ui": 0}


def test_forget_twice_then_the_instance_may_start_again(collector: Collector) -> None:
    c = collector
    b = body()
    c.post(b)
    assert c.forget(IID).status_code == 200
    assert c.forget(IID).status_code == 404
    # Its id is gone with it: a resent heartbeat is new data from an instance still opted in.
    assert c.post(b).json()["status"] == "accepted"
    assert c.insights(days=7)["totals"] == totals(MIX)


def test_forget_path_is_the_heartbeat_url_with_the_id_in_place_of_heartbeat(
    collector: Collector,
) -> None:
    c = collector
    c.post(body())
    endpoint = f"{c.url}/api/instances/heartbeat"
    url = endpoint.removesuffix("/heartbeat") + f"/{IID}"
    assert c.http.delete(url, headers=auth(IID)).status_code == 200


def test_outbox_forget_against_the_collector(collector: Collector, tmp_path: Path) -> None:
    """The other side of ``outbox forget``: the real command, the real service."""
    from click.testing import CliRunner

    from outbox import Telemetry, db, heartbeats, store
    from outbox.cli import CliContext, cli
    from outbox.contract import bearer

    path = tmp_path / "helios" / "telemetry.db"
    t = Telemetry(db_path=path, enabled=True, environ={}, clock=collector.clock)
    t.track_command("sync")
    t.close()
    conn = db.connect(path)
    hb = heartbeats.commit_seal(
        conn,
        heartbeats.plan_seal(conn),
        heartbeat_id=str(uuid.uuid4()),
        now=int(collector.clock()),
        version="1.4.2",
        edition="community",
    )
    secret = store.existing_secret(conn)
    conn.close()
    assert hb is not None and secret is not None
    # The outbox's own secret, as its worker would send it: `outbox forget` sends it too.
    sent = collector.post(hb.payload, Authorization=bearer(secret))
    assert sent.json()["status"] == "accepted"
    endpoint = f"{collector.url}/api/instances/heartbeat"
    args = ["--db", str(path), "forget", "--yes", "--endpoint", endpoint]
    obj = CliContext(clock=collector.clock, busy_timeout=0.2)
    result = CliRunner().invoke(cli, args, obj=obj, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "the service deleted the data of instance" in result.output
    assert collector.insights(days=7)["totals"] == {"api": 0, "command": 0, "ui": 0}
    again = CliRunner().invoke(cli, args, obj=obj, catch_exceptions=False)
    assert "the service has no data for this instance (HTTP 404" in again.output
