"""Storing the counts of web requests off the request path, in batches.

A request hands its API name to :class:`CountWriter` (a queue put, about a
microsecond) and is done. One background thread per middleware waits for the
first name, lets the requests of the next :data:`LINGER` (50 ms) join it, adds them
up per name and stores them with one track call per distinct name: at a few
requests a second that is a track call per request, 50 ms after the response; at
thousands a second one call stores the counts of hundreds of requests, so the cost
per request falls and the event loop never waits on SQLite (measured in
``benchmarks/web_overhead.py``).

:meth:`CountWriter.drain` waits until everything handed over is stored; the
middlewares call it when the server shuts down (ASGI lifespan) and at interpreter
exit. A process killed with SIGKILL loses what its last 50 ms of requests handed
over, as it loses the requests it was serving. After ``fork()`` the child starts its
own thread and queue.

Framework-neutral: a WSGI adapter uses it the same way.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from outbox.client import Telemetry

log = logging.getLogger("outbox.web")

#: Most names (requests) stored by one round of the thread.
MAX_BATCH: Final = 10_000
#: Seconds the thread lets requests gather after the first one before storing them:
#: at a steady 10,000 requests a second this makes one track call per name per 50 ms
#: instead of one per request. A drain does not wait for it.
LINGER: Final = 0.05

_writers: weakref.WeakSet[CountWriter] = weakref.WeakSet()


class CountWriter:
    """One background thread storing the API names handed over by requests.

    :param telemetry: returns the :class:`~outbox.Telemetry` to store into.
    :param source: for the one log line if storing ever raises.
    """

    def __init__(
        self, telemetry: Callable[[], Telemetry], *, source: str, linger: float = LINGER
    ) -> None:
        self._telemetry = telemetry
        self.source = source
        self.linger = linger
        self._queue: queue.SimpleQueue[str | None | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._failed_once = False
        _writers.add(self)

    def put(self, name: str | None) -> None:
        """Hand over one API call (``None``: a relayed call that matched nothing declared,
        stored as dropped ``unknown_name``). Never blocks, never raises."""
        if self._pid != os.getpid():
            self._start()
        self._queue.put(name)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over so far is stored. True when it was in time."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A fork's child: the parent's thread is not here; its queue is not ours.
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, name=f"helios-telemetry {self.source}", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if self.linger and not isinstance(item, threading.Event):
                time.sleep(self.linger)  # let the requests of the next moments join
            batch: Counter[str | None] = Counter()
            waiting: list[threading.Event] = []
            taken = 0
            while True:
                if isinstance(item, threading.Event):
                    waiting.append(item)
                else:
                    batch[item] += 1
                    taken += 1
                if taken >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._store(batch)
            for event in waiting:
                event.set()

    def _store(self, batch: Counter[str | None]) -> None:
        try:
            telemetry = self._telemetry()
            for name, n in batch.items():
                if name is None:
                    telemetry.count_dropped("unknown_name", n)
                else:
                    telemetry.track_api_call(name, n)
        except Exception:  # a track call never raises; this guards the thread anyway
            if not self._failed_once:
                self._failed_once = True
                log.warning("telemetry: %s could not store counts", self.source, exc_info=True)


@atexit.register
def _drain_all() -> None:
    """At interpreter exit, store what the requests of the last moments handed over."""
    for writer in list(_writers):
        writer.drain(timeout=2.0)
