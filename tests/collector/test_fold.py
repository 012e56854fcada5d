"""The retention rule for bodies (issue 16): bodies older than N days are folded into
per-instance day rows; forget, an instance's totals and idempotency stay exact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from collector import Storage
from collector.__main__ import main
from collector.schema import instance_days, instance_heartbeats
from collector.validate import parse
from tests.collector.payloads import IID, IID2, MIX, body, totals
from tests.collector.test_consistency import aggregates, from_bodies
from tests.support.collector import Collector

DAY_SECONDS = 86_400


def kept_bodies(storage: Storage) -> int:
    h = instance_heartbeats
    return int(
        storage.read(
            lambda c: c.execute(
                sa.select(sa.func.count()).select_from(h).where(sa.func.length(h.c.body) > 0)
            ).scalar_one()
        )
    )


def test_folded_bodies_keep_forget_totals_and_duplicates_exact(collector: Collector) -> None:
    old = [body(instance_id=iid, sequence=s) for iid in (IID, IID2) for s in (1, 2, 3)]
    for b in old:
        assert collector.post(b).json()["status"] == "accepted"
    collector.clock.advance(40 * DAY_SECONDS)
    recent = body(instance_id=IID, sequence=4)
    assert collector.post(recent).json()["status"] == "accepted"
    before = collector.instance(IID).json()

    done = collector.storage.fold(before=int(collector.clock()) - 35 * DAY_SECONDS, chunk=4)

    assert (done.heartbeats, done.instances) == (6, 2)
    assert kept_bodies(collector.storage) == 1  # the recent one
    rows = collector.storage.read(lambda c: c.execute(sa.select(instance_days)).all())
    assert sorted((r.instance_id, r.day) for r in rows) == sorted(
        (iid, day) for iid in (IID, IID2) for day in ("2026-11-24", "2026-11-25")
    )
    assert collector.instance(IID).json() == before  # the instance's own view is unchanged
    assert aggregates(collector) == from_bodies(collector)
    # Folded heartbeats keep their id and hash: a resend is a duplicate, a change a 409.
    assert collector.post(old[0]).json()["status"] == "duplicate"
    assert collector.post(old[0].replace(b'"sequence":', b'"sequence": ')).status_code == 409
    # Forget subtracts exactly what was folded, and what was not.
    r = collector.forget(IID)
    assert r.json()["heartbeats"] == 4
    assert r.json()["counts"] == 4 * sum(totals(MIX).values())
    left = collector.insights(days=60)["totals"]
    assert left == {k: 3 * v for k, v in totals(MIX).items()}
    assert aggregates(collector) == from_bodies(collector)
    folded = collector.storage.read(
        lambda c: c.execute(sa.select(instance_days.c.instance_id)).scalars().all()
    )
    assert set(folded) == {IID2}
    # Nothing is left to fold (the recent body was IID's): folding is idempotent.
    assert collector.storage.fold(before=int(collector.clock()) + 1).heartbeats == 0


def test_the_fold_command(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    storage = Storage(db)
    storage.migrate(now=0)
    hb = dataclasses.replace(parse(body()), credential="c" * 64)
    assert storage.ingest([hb], now=1_000)[0].status == "accepted"  # received in 1970
    storage.close()
    result = CliRunner().invoke(main, ["fold", "--db", str(db), "--days", "35"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "folded 1 heartbeats of 1 instances into 2 day rows; bodies of the last 35 days are kept\n"
    )
    storage = Storage(db)
    assert kept_bodies(storage) == 0
    info = storage.instance(IID)
    assert info is not None and info.totals == totals(MIX)
    storage.close()
