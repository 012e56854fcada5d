"""A seeded, misbehaving HTTP/1.1 reverse proxy, in front of the real collector.

It sits between the worker and the collector and, per request, chooses one of:

``pass``              forward and relay the answer;
``503`` / ``429``     answer itself (``Retry-After`` included), nothing forwarded;
``reset``             reset the connection before forwarding anything;
``slow``              wait past the client's timeout, *then* forward (the collector
                      stores a heartbeat whose sender has given up);
``lost_after_store``  forward, let the collector store it, then reset the
                      connection instead of relaying the answer — the case where
                      the sender must resend and the receiver must not count twice.

Raw asyncio streams rather than an HTTP framework, so that resets are real TCP
resets. One request per connection (``Connection: close``).

``stats`` counts the faults chosen (what the collector answered, including the
answers the proxy then dropped, is in its own record:
:attr:`tests.support.collector.Collector.answers`); :meth:`wait_idle` waits until no
connection is being handled (a ``slow`` one may still be on its way upstream).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping

FAULTS = ("pass", "503", "429", "reset", "slow", "lost_after_store")


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int,
        weights: Mapping[str, float] | None = None,
        slow_seconds: float = 1.5,
        retry_after: str = "1",
    ) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.weights = dict(weights or {"pass": 1.0})
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.stats: Counter[str] = Counter()
        self.active = 0
        self.connection_timeout = 30.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = fut.result(timeout=10)
        return self

    async def _start(self) -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._handle, sock=sock)
        return int(sock.getsockname()[1])

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            # Connections still being handled (a slow one asleep): cancel them, so that
            # no task is destroyed pending when the loop closes.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def set_weights(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once no connection is being handled; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the proxy still handles {self.active} connection(s)")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/instances/heartbeat"

    # -- one connection ---------------------------------------------------------------

    def _choose(self) -> str:
        names = list(self.weights)
        return self.rng.choices(names, weights=[self.weights[n] for n in names])[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio keeps only a weak reference to a connection's task: hold it, or a task
        # waiting on a dead connection can be garbage-collected while still pending.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.active += 1
        try:
            await asyncio.wait_for(self._serve(reader, writer), timeout=self.connection_timeout)
        except TimeoutError:
            self.stats["proxy_timeout"] += 1
        finally:
            self.active -= 1
            self._tasks.discard(task)
            if not writer.is_closing():
                _abort(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            _abort(writer)
            return
        fault = self._choose()
        self.stats[fault] += 1
        if fault in ("503", "429"):
            reason = "Service Unavailable" if fault == "503" else "Too Many Requests"
            writer.write(
                f"HTTP/1.1 {fault} {reason}\r\nRetry-After: {self.retry_after}\r\n"
                "Content-Type: application/json\r\nContent-Length: 2\r\n"
                "Connection: close\r\n\r\n{}".encode()
            )
            await writer.drain()
            writer.close()
            return
        if fault == "reset":
            _abort(writer)
            return
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        try:
            answer = await self._forward(head, body)
        except OSError:
            _abort(writer)  # upstream down: like a connection refused
            return
        if fault == "lost_after_store":
            _abort(writer)
            return
        try:
            writer.write(answer)
            await writer.drain()
            writer.close()
        except ConnectionError:
            _abort(writer)

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [
            ln
            for ln in head.split(b"\r\n")
            if ln and not ln.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        request = b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            up_writer.write(request)
            await up_writer.drain()
            answer = await up_reader.read()  # until the upstream closes
        finally:
            up_writer.close()
        return answer


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST, not FIN) and mark the writer closed."""
    writer.transport.abort()
    writer.close()
