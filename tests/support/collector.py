"""The reference collector as tests use it: served by uvicorn on 127.0.0.1 from a thread
of the test process, on its own storage (a SQLite file or a PostgreSQL database).

* :class:`Collector`: start, stop and start again on the same port (a collector that
  goes down and comes back), every ingest answer recorded by heartbeat id
  (:class:`Answers`), an HTTP client aimed at it (``post`` signs with the instance's
  test secret), and what it stored, read back in the shapes of
  :mod:`tests.support.totals`.
* :func:`secret_for`, :func:`auth`, :func:`auth_of`: the credentials of test instances.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector import Storage, create_app
from collector.server import Running, start_in_thread
from outbox.contract import bearer
from tests.support.clock import FakeClock
from tests.support.totals import DayTotals, Totals

INGEST = "/api/instances/heartbeat"
#: An instance id used when a body names none (or cannot be read).
DEFAULT_INSTANCE = "5d0c0000-0000-4000-8000-000000000001"

# -- credentials of test instances ----------------------------------------------------------


def secret_for(instance_id: str) -> str:
    """A test instance's secret (the outbox makes a random one; tests need it again)."""
    return "test-" + hashlib.sha256(instance_id.lower().encode()).hexdigest()[:40]


def auth(instance_id: str) -> dict[str, str]:
    """The ``Authorization`` header of a test instance."""
    return {"Authorization": bearer(secret_for(instance_id))}


def auth_of(body: bytes) -> dict[str, str]:
    """The ``Authorization`` header for a body's instance (a fixed one if unreadable)."""
    try:
        iid = json.loads(body)["instance_id"]
    except (ValueError, KeyError, TypeError):
        iid = None
    return auth(iid if isinstance(iid, str) else DEFAULT_INSTANCE)


# -- every ingest answer, by heartbeat id ---------------------------------------------------


@dataclass
class Answers:
    """Every ingest answer the collector gave: status and, for 200s, accepted/duplicate."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[tuple[str, int, str]] = field(default_factory=list)  # (id, http, status)

    def add(self, hid: str, http: int, status: str) -> None:
        with self.lock:
            self.log.append((hid, http, status))

    def by_id(self) -> dict[str, list[str]]:
        """``{heartbeat id: ["accepted", "duplicate", "503", ...]}`` in the order given."""
        out: dict[str, list[str]] = {}
        for hid, http, status in self.log:
            out.setdefault(hid, []).append(status or str(http))
        return out

    def statuses(self) -> Counter[str]:
        return Counter(status or str(http) for _, http, status in self.log)


class Recording:
    """ASGI middleware around the collector: records each ingest answer (by the
    heartbeat's ``Idempotency-Key``). ``slow_after_store`` holds the answer back
    for that many seconds *after* the collector stored the heartbeat (what a proxy's
    504 looks like from the sender's side)."""

    def __init__(self, app: ASGIApp, answers: Answers) -> None:
        self.app = app
        self.answers = answers
        self.slow_after_store = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != INGEST:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        hid = headers.get(b"idempotency-key", b"").decode("latin-1")
        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, keep)
        status = int(held[0]["status"])
        body = b"".join(m.get("body", b"") for m in held[1:])
        try:
            what = str(json.loads(body).get("status", "")) if status == 200 else ""
        except ValueError:
            what = ""
        self.answers.add(hid, status, what)
        if self.slow_after_store:
            import anyio

            await anyio.sleep(self.slow_after_store)
        for m in held:
            await send(m)


# -- the collector --------------------------------------------------------------------------


class Http:
    """An HTTP client aimed at one collector (relative URLs are its)."""

    def __init__(self, client: httpx.Client, base: Callable[[], str]) -> None:
        self.client = client
        self._base = base

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url if "://" in url else self._base() + url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


class Collector:
    """The reference collector on 127.0.0.1: ``Collector(storage).start()``, ``stop()``
    (``start()`` again comes back on the same port), ``close()`` (also closes the storage).

    :param clock: the collector's clock (default: a :class:`FakeClock` at ``T0``).
    :param http: a client for :attr:`http` and the request helpers (tests that only
        run the worker against it need none).
    :param app_options: passed to :func:`collector.create_app` (``min_instances=1``...).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], float] | None = None,
        http: httpx.Client | None = None,
        **app_options: Any,
    ) -> None:
        self.storage = storage
        self.clock = clock or FakeClock()
        self.app_options = app_options
        self.answers = Answers()
        self.port = 0
        self.running: Running | None = None
        self.app: Recording | None = None
        self._client = http

    # -- serving --------------------------------------------------------------------------

    def start(self) -> Collector:
        app = Recording(
            create_app(self.storage, clock=self.clock, **self.app_options), self.answers
        )
        if self.app is not None:
            app.slow_after_store = self.app.slow_after_store
        self.app = app
        self.running = start_in_thread(app, port=self.port)
        self.port = int(self.running.url.rsplit(":", 1)[1])
        return self

    def stop(self, *, wait: bool = True) -> Running | None:
        """Stop listening (the collector is down); returns the server, to join later when
        ``wait`` is false (uvicorn's shutdown takes ~0.2 s)."""
        running, self.running = self.running, None
        if running is not None:
            running.stop(wait=wait)
        return running

    def close(self) -> None:
        self.stop()
        self.storage.close()

    def __enter__(self) -> Collector:
        return self.start() if self.running is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The ingest URL, what a worker is given as its endpoint."""
        return self.url + INGEST

    # -- requests -------------------------------------------------------------------------

    @property
    def http(self) -> Http:
        if self._client is None:
            raise RuntimeError("this Collector was made without an HTTP client (http=)")
        return Http(self._client, lambda: self.url)

    def post(self, body: bytes, *, signed: bool = True, **headers: str) -> httpx.Response:
        """POST a heartbeat, with its instance's secret unless ``signed`` is false (or
        an ``Authorization`` is among ``headers``)."""
        return self.http.post(
            INGEST,
            content=body,
            headers={
                "Content-Type": "application/json",
                **(auth_of(body) if signed else {}),
                **headers,
            },
        )

    def instance(self, iid: str, **headers: str) -> httpx.Response:
        """``GET /api/instances/{iid}`` with that instance's secret (unless given)."""
        return self.http.get(f"/api/instances/{iid}", headers={**auth(iid), **headers})

    def forget(self, iid: str, **headers: str) -> httpx.Response:
        """``DELETE /api/instances/{iid}`` with that instance's secret (unless given)."""
        return self.http.delete(f"/api/instances/{iid}", headers={**auth(iid), **headers})

    def insights(self, days: int = 30, **params: int) -> dict[str, Any]:
        r = self.http.get("/api/insights", params={"days": days, **params})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    # -- what it stored -------------------------------------------------------------------

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.storage.read(lambda c: c.exec_driver_sql(sql).all())]

    def totals(self) -> Totals:
        """Usage counted per (kind, name), over every day; drops are :meth:`dropped`."""
        return {
            (str(k), str(n)): int(c)
            for k, n, c in self._query(
                "SELECT kind, name, sum(count) FROM aggregated_metrics "
                "WHERE kind <> 'dropped' GROUP BY kind, name"
            )
        }

    def day_totals(self) -> DayTotals:
        """Usage counted per (UTC day, kind, name)."""
        return {
            (str(d), str(k), str(n)): int(c)
            for d, k, n, c in self._query(
                "SELECT day, kind, name, count FROM aggregated_metrics WHERE kind <> 'dropped'"
            )
        }

    def dropped(self) -> dict[str, int]:
        """Drops reported by the instances, per reason, over every day."""
        return {
            str(n): int(c)
            for n, c in self._query(
                "SELECT name, sum(count) FROM aggregated_metrics WHERE kind = 'dropped' "
                "GROUP BY name"
            )
        }

    def heartbeats(self) -> list[dict[str, Any]]:
        """Every stored heartbeat body, decoded, by sequence."""
        rows = self._query("SELECT body FROM instance_heartbeats ORDER BY sequence")
        return [json.loads(bytes(r[0])) for r in rows]

    def heartbeat_ids(self) -> set[str]:
        return {str(r[0]) for r in self._query("SELECT heartbeat_id FROM instance_heartbeats")}

    def instances(self) -> dict[str, dict[str, int]]:
        rows = self._query(
            "SELECT instance_id, last_sequence, heartbeats, missing, repeats FROM instances"
        )
        return {
            str(r[0]): {
                "last_sequence": r[1],
                "heartbeats": r[2],
                "missing": r[3],
                "repeats": r[4],
            }
            for r in rows
        }

    def gaps(self) -> list[tuple[str, int, int]]:
        return [
            (str(i), int(a), int(b))
            for i, a, b in self._query(
                "SELECT instance_id, first_missing, last_missing FROM sequence_gaps"
            )
        ]

    def integrity(self) -> str:
        """``PRAGMA integrity_check`` of a SQLite collector database."""
        return str(self._query("PRAGMA integrity_check")[0][0])
