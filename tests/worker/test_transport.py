"""A receiver cannot push the worker around: the deadline per attempt and the answer limit,
against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.support.clock import T0
from tests.worker.test_sender import HB
from worker.retry import RetryPolicy
from worker.sender import Sender


class RawServer:
    """Accepts connections, reads one request, and answers with ``answer(conn)``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sent = 0  # bytes of answer written before the client hung up
        self.hung_up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                try:
                    self.answer(conn)
                except OSError:
                    self.hung_up.set()

    def write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def serving(answer: Callable[[RawServer, socket.socket], None]) -> Iterator[RawServer]:
    server: RawServer
    server = RawServer(lambda conn: answer(server, conn))
    try:
        yield server
    finally:
        server.close()


def sender(port: int, **kwargs: float) -> Sender:
    return Sender(
        endpoint=f"http://127.0.0.1:{port}/api/instances/heartbeat",
        version="1.4.2",
        policy=RetryPolicy(attempts=1),
        clock=lambda: T0,
        sleep=lambda _: None,
        **kwargs,  # type: ignore[arg-type]
    )


RECEIPT = b'{"status":"accepted","payload_sha256":"' + HB.payload_sha256.encode() + b'"}'


def test_an_answer_trickled_past_the_attempt_deadline_is_cut_off() -> None:
    """Each byte comes well within the read timeout, so only the attempt's own deadline can
    end it: the attempt fails as a timeout (retried later) instead of completing."""
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(RECEIPT)}\r\n\r\n".encode()
        + RECEIPT
    )

    def trickle(server: RawServer, conn: socket.socket) -> None:
        for i in range(len(answer)):
            server.write(conn, answer[i : i + 1])
            time.sleep(0.05)  # the whole answer takes ~7 s

    with serving(trickle) as server:
        s = sender(server.port, read_timeout=1.0, attempt_timeout=1.0)
        try:
            d = s.deliver(HB)
        finally:
            s.close()
    assert (d.result, d.attempts, d.error) == ("pending", 1, "timeout (ReadTimeout)")
    assert server.sent < len(answer)


def test_without_the_deadline_the_same_trickle_completes() -> None:
    """The control: the same server, a deadline longer than the trickle, and it is sent."""
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(RECEIPT)}\r\n\r\n".encode()
        + RECEIPT
    )

    def trickle(server: RawServer, conn: socket.socket) -> None:
        for i in range(0, len(answer), 40):
            server.write(conn, answer[i : i + 40])
            time.sleep(0.05)

    with serving(trickle) as server:
        s = sender(server.port, read_timeout=1.0, attempt_timeout=30.0)
        try:
            d = s.deliver(HB)
        finally:
            s.close()
    assert d.result == "sent" and d.receipt is not None
    assert d.receipt["status"] == "accepted"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_answer_is_not_read(chunked: bool) -> None:
    """200 with a 200 MB body: the status counts (sent), the body is read up to 64 KiB only,
    and the worker hangs up instead of taking it all."""
    size = 200 * 1024 * 1024
    block = b"x" * 65536

    def huge(server: RawServer, conn: socket.socket) -> None:
        if chunked:
            server.write(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(size // len(block)):
                server.write(conn, b"10000\r\n" + block + b"\r\n")
        else:
            server.write(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            for _ in range(size // len(block)):
                server.write(conn, block)

    with serving(huge) as server:
        s = sender(server.port)
        try:
            d = s.deliver(HB)
        finally:
            s.close()
        assert server.hung_up.wait(10)
    assert (d.result, d.status) == ("sent", 200)
    assert d.receipt == {"http_status": 200, "payload_sha256_matches": None}  # no body kept
    assert server.sent < 16 * 1024 * 1024  # socket buffers, not 200 MB
