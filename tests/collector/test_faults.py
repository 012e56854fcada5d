"""Faults on the receiving side: a locked database, a failing storage, a poisoned batch."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from collector import Storage, StorageError, create_app
from collector.server import serve_in_thread
from collector.storage import Outcome
from collector.validate import Heartbeat
from tests.collector.payloads import IID, MIX, auth, body, totals
from tests.support.clock import FakeClock


def test_a_database_locked_by_another_process_is_503_not_500(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    storage = Storage(path, busy_timeout=0.2)
    app = create_app(storage, clock=FakeClock())
    other = sqlite3.connect(path, isolation_level=None)
    with serve_in_thread(app) as running, httpx.Client(base_url=running.url) as http:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        r = http.post(
            "/api/instances/heartbeat",
            content=body(),
            headers={"Content-Type": "application/json", **auth(IID)},
        )
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert "locked" in r.json()["error"]
        other.execute("ROLLBACK")
        again = http.post(
            "/api/instances/heartbeat",
            content=body(),
            headers={"Content-Type": "application/json", **auth(IID)},
        )
        assert again.json()["status"] == "accepted"
    other.close()
    storage.close()


class Poisoned(Storage):
    """Fails every transaction that holds a heartbeat with sequence 13.

    Its first transaction signals ``holding`` and then waits until ``waiting``
    requests are queued behind it, so that those share the next batch.
    """

    batches: list[tuple[int, bool]]
    holding: threading.Event
    queued: Callable[[], int]
    waiting = 0

    def ingest(self, batch: Sequence[Heartbeat], *, now: int) -> list[Outcome]:
        if not self.batches:
            self.holding.set()
            deadline = time.monotonic() + 10
            while self.queued() < self.waiting and time.monotonic() < deadline:
                time.sleep(0.005)
        poisoned = any(hb.sequence == 13 for hb in batch)
        self.batches.append((len(batch), poisoned))
        if poisoned:
            raise RuntimeError("poison")
        return super().ingest(batch, now=now)


def test_one_bad_heartbeat_does_not_fail_the_others_in_its_batch(tmp_path: Path) -> None:
    storage = Poisoned(tmp_path / "collector.db")
    storage.batches, storage.holding, storage.waiting = [], threading.Event(), 23
    app = create_app(storage, clock=FakeClock())
    storage.queued = lambda: len(app.state.batcher._queue)  # type: ignore[attr-defined]

    def send(i: int) -> httpx.Response:
        iid = f"5d0c0000-0000-4000-8000-{i:012d}"
        b = body(instance_id=iid, sequence=13 if i == 5 else 1)
        if i > 0:  # the first request goes alone and is held; the rest queue behind it
            assert storage.holding.wait(10)
        with httpx.Client(base_url=running.url) as http:
            return http.post(
                "/api/instances/heartbeat",
                content=b,
                headers={"Content-Type": "application/json", **auth(iid)},
            )

    with serve_in_thread(app) as running, ThreadPoolExecutor(24) as pool:
        results = list(pool.map(send, range(24)))
        with httpx.Client(base_url=running.url) as http:
            doc = http.get("/api/insights?days=7").json()
    # The batch holding the poison failed as a whole, then its members went one by one.
    assert storage.batches[:2] == [(1, False), (23, True)]
    assert sorted(storage.batches[2:]) == [(1, False)] * 22 + [(1, True)]
    assert results[5].status_code == 500
    assert results[5].json() == {"error": "the collector's database failed; try again later"}
    assert [r.status_code for i, r in enumerate(results) if i != 5] == [200] * 23
    assert doc["totals"] == {k: 23 * v for k, v in totals(MIX).items()}
    storage.close()


class Broken(Storage):
    def ingest(self, batch: Sequence[Heartbeat], *, now: int) -> list[Outcome]:
        raise StorageError("disk I/O error")


@pytest.mark.parametrize("path", ["/api/instances/heartbeat"])
def test_a_storage_error_is_a_json_500(tmp_path: Path, path: str) -> None:
    storage = Broken(tmp_path / "collector.db")
    with serve_in_thread(create_app(storage)) as running, httpx.Client(base_url=running.url) as h:
        r = h.post(path, content=body(), headers={"Content-Type": "application/json", **auth(IID)})
        assert r.status_code == 500
        assert r.json() == {"error": "the collector's database failed; try again later"}
        assert h.get("/healthz").json() == {"status": "ok", "database": "sqlite"}
    storage.close()


def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    storage = Storage("postgresql://nobody:pw@127.0.0.1:9/none")
    app = create_app(storage, migrate=False)
    with serve_in_thread(app) as running, httpx.Client(base_url=running.url) as h:
        r = h.get("/healthz")
        assert r.status_code == 503
        assert r.json() == {"error": "the database does not answer"}
        r = h.get("/api/insights")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
    storage.close()
