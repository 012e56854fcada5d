"""Group commit: heartbeats that arrive together are stored in one transaction.

Each request hands its validated heartbeat to :meth:`Batcher.submit` and waits
for the outcome; a writer task takes everything queued so far (up to a limit),
runs :meth:`Storage.ingest <collector.storage.Storage.ingest>` on it in a thread,
and answers every waiting request. Nobody is answered before the transaction
holding their heartbeat has committed, so nothing acknowledged lives only in
memory. Under light load a batch is one heartbeat; under heavy load one commit
(one fsync on SQLite) serves dozens.

A failed batch is retried one heartbeat at a time, so that one heartbeat the
database refuses cannot fail the others that shared its batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import anyio.to_thread

from collector.errors import CollectorError, StorageBusy, StorageError
from collector.storage import Outcome, Storage
from collector.validate import Heartbeat

log = logging.getLogger(__name__)

Waiting = tuple[Heartbeat, "asyncio.Future[Outcome]"]

DEFAULT_MAX_QUEUE: Final = 10_000


class Batcher:
    """Queue heartbeats and store them in batches.

    :param storage: where heartbeats go.
    :param clock: unix seconds; read once per batch as its receipt time.
    :param writers: concurrent transactions (1 for SQLite, which has one writer).
    :param max_items: heartbeats per transaction at most.
    :param max_rows: day rows per transaction at most (one huge heartbeat goes alone).
    :param max_queue: heartbeats waiting at most; past it :meth:`submit` raises
        :class:`StorageBusy` (answered 503 + Retry-After).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], float],
        writers: int = 1,
        max_items: int = 256,
        max_rows: int = 50_000,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.writers = writers
        self.max_items = max_items
        self.max_rows = max_rows
        self.max_queue = max_queue
        self._queue: deque[Waiting] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def submit(self, heartbeat: Heartbeat) -> Outcome:
        """Store ``heartbeat`` (with whatever else is waiting) and return its outcome."""
        if self._closed:
            raise StorageBusy("the collector is shutting down")
        if len(self._queue) >= self.max_queue:
            raise StorageBusy(f"{len(self._queue)} heartbeats are waiting to be stored")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start(loop)
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((heartbeat, future))
        self._wake.set()
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()
        self._tasks = [loop.create_task(self._run()) for _ in range(self.writers)]

    async def aclose(self) -> None:
        """Store what is queued, then stop the writer tasks."""
        self._closed = True
        self._wake.set()
        if self._tasks and self._loop is asyncio.get_running_loop():
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _take(self) -> list[Waiting]:
        batch: list[Waiting] = []
        rows = 0
        while self._queue and len(batch) < self.max_items:
            heartbeat, future = self._queue[0]
            if batch and rows + len(heartbeat.rows) > self.max_rows:
                break
            self._queue.popleft()
            if future.cancelled():  # the client went away before its turn
                continue
            batch.append((heartbeat, future))
            rows += len(heartbeat.rows)
        return batch

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch = self._take()
            if batch:
                await self._store(batch)

    async def _store(self, batch: list[Waiting]) -> None:
        heartbeats = [hb for hb, _ in batch]
        now = int(self.clock())
        started = time.perf_counter()
        try:
            outcomes = await anyio.to_thread.run_sync(
                functools.partial(self.storage.ingest, heartbeats, now=now)
            )
        except Exception as e:
            if len(batch) > 1 and not isinstance(e, StorageBusy):
                log.warning("a batch of %d failed (%s); storing them one by one", len(batch), e)
                for one in batch:
                    await self._store([one])
                return
            if not isinstance(e, CollectorError):
                log.exception("storing a heartbeat failed unexpectedly")
                e = StorageError(f"unexpected error: {type(e).__name__}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        log.debug(
            "stored %d heartbeats in %.1f ms", len(batch), (time.perf_counter() - started) * 1000
        )
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
