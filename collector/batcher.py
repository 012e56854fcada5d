"""Group commit: heartbeats that arrive together are stored in one transaction.

Each request hands its validated heartbeat to :meth:`Batcher.submit` and waits
for the outcome. Writer threads of their own take everything queued so far (up to a
limit), run :meth:`Storage.ingest <collector.storage.Storage.ingest>` on it, hand
the outcomes back to the event loop (``call_soon_threadsafe``) and go straight on to
the next batch: the loop never has to come round to start a transaction, so while
it answers one batch and reads the next requests, the writer is already storing
what queued meanwhile. Nobody is answered before the transaction holding their
heartbeat has committed, so nothing acknowledged lives only in memory. Under light
load a batch is one heartbeat; under heavy load one commit (one fsync on SQLite)
serves dozens.

A failed batch is retried one heartbeat at a time, so that one heartbeat the
database refuses cannot fail the others that shared its batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from collector.errors import CollectorError, StorageBusy, StorageError
from collector.storage import Outcome, Storage
from collector.validate import Heartbeat

log = logging.getLogger(__name__)

Waiting = tuple[Heartbeat, "asyncio.Future[Outcome]"]

DEFAULT_MAX_QUEUE: Final = 10_000
#: A writer thread with nothing to do for this long ends (the next submit starts one).
IDLE_SECONDS: Final = 5.0


class Batcher:
    """Queue heartbeats and store them in batches.

    :param storage: where heartbeats go.
    :param clock: unix seconds; read once per batch as its receipt time.
    :param writers: concurrent transactions, one thread each (1 for SQLite, which has
        one writer).
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
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    async def submit(self, heartbeat: Heartbeat) -> Outcome:
        """Store ``heartbeat`` (with whatever else is waiting) and return its outcome."""
        if self._closed:
            raise StorageBusy("the collector is shutting down")
        if len(self._queue) >= self.max_queue:
            raise StorageBusy(f"{len(self._queue)} heartbeats are waiting to be stored")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        with self._ready:
            self._queue.append((heartbeat, future))
            if len(self._threads) < self.writers:
                thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._ready.notify()
        return await future

    async def aclose(self) -> None:
        """Store what is queued, then stop the writer threads."""
        with self._ready:
            self._closed = True
            threads = list(self._threads)
            self._ready.notify_all()
        for thread in threads:
            await asyncio.to_thread(thread.join)

    def _take(self) -> list[Waiting]:
        """The next batch (called holding ``_ready``)."""
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

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._ready:
                idle_until = time.monotonic() + IDLE_SECONDS
                while not self._queue:
                    left = idle_until - time.monotonic()
                    if self._closed or left <= 0:
                        self._threads.remove(me)
                        return
                    self._ready.wait(left)
                batch = self._take()
            if batch:
                self._store(batch)

    def _store(self, batch: list[Waiting]) -> None:
        heartbeats = [hb for hb, _ in batch]
        now = int(self.clock())
        started = time.perf_counter()
        try:
            outcomes = self.storage.ingest(heartbeats, now=now)
        except Exception as e:
            if len(batch) > 1 and not isinstance(e, StorageBusy):
                log.warning("a batch of %d failed (%s); storing them one by one", len(batch), e)
                for one in batch:
                    self._store([one])
                return
            if not isinstance(e, CollectorError):
                log.exception("storing a heartbeat failed unexpectedly")
                e = StorageError(f"unexpected error: {type(e).__name__}")
            _deliver(batch, e)
            return
        log.debug(
            "stored %d heartbeats in %.1f ms", len(batch), (time.perf_counter() - started) * 1000
        )
        _deliver(batch, outcomes)


def _deliver(batch: list[Waiting], result: list[Outcome] | Exception) -> None:
    """Answer every request of ``batch`` on its own event loop (from a writer thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[int, asyncio.Future[Outcome]]]] = {}
    for i, (_, future) in enumerate(batch):
        by_loop.setdefault(future.get_loop(), []).append((i, future))
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futures, result)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


def _settle(
    futures: list[tuple[int, asyncio.Future[Outcome]]], result: list[Outcome] | Exception
) -> None:
    for i, future in futures:
        if future.done():  # cancelled: the client went away
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result[i])
