"""Sending one heartbeat: its frozen bytes, POSTed with retries, and what the receiver answered.

The ``httpx.Client`` is built once per :class:`Sender` by :func:`worker.transport.build_client`
(the transport is injectable: tests pass ``httpx.MockTransport``): a deadline per
attempt, answers read up to 64 KiB, no proxy for loopback, no redirects.

Every attempt sends the stored bytes unchanged, with the heartbeat id as
``Idempotency-Key`` and the instance secret as ``Authorization: Bearer``. Before
each attempt the ``gate`` is asked whether the heartbeat may still go (telemetry
still on, the heartbeat still pending): an opt-out between two attempts stops the
delivery at once. Nothing here logs a payload: ids, sizes and statuses only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from tenacity import RetryCallState

from outbox.contract import AUTHORIZATION_HEADER, bearer
from outbox.heartbeats import Heartbeat
from worker.errors import RetryableDelivery, Withdrawn
from worker.retry import Rejected, Retired, Retry, RetryPolicy, Sent, classify
from worker.transport import MAX_ANSWER_BYTES, Deadline, build_client, read_answer

log = logging.getLogger("worker.sender")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
#: An attempt (connect, send, answer) is over after this long, however the receiver trickles.
DEFAULT_ATTEMPT_TIMEOUT = 45.0

_SHA256 = re.compile(r"[0-9a-f]{64}")

Result = Literal["sent", "rejected", "retired", "pending", "withdrawn"]

#: Asked before every attempt: None to go on, else why the heartbeat must not go.
Gate = Callable[[Heartbeat], str | None]


@dataclass(frozen=True)
class Delivery:
    """What one delivery cycle of one heartbeat came to.

    ``pending``: the attempts of this cycle ran out (or the receiver asked for a
    long pause); the heartbeat stays pending for the next cycle. ``withdrawn``: the
    gate said no before an attempt (switched off, or the heartbeat is gone).
    """

    heartbeat_id: str
    result: Result
    attempts: int
    status: int | None = None  # the last HTTP status, None when no answer came
    error: str | None = None
    retry_after: float | None = None
    receipt: dict[str, Any] | None = field(default=None)
    hash_mismatch: bool = False


def _json(body: bytes | None) -> dict[str, Any] | None:
    if body is None:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _receipt(status: int, body: bytes | None) -> dict[str, Any]:
    """The parts of the receiver's answer worth keeping (never its whole body)."""
    receipt: dict[str, Any] = {"http_status": status}
    doc = _json(body)
    if doc is None:
        return receipt
    said = doc.get("status")
    if isinstance(said, str):
        receipt["status"] = said[:32]
    digest = doc.get("payload_sha256")
    if isinstance(digest, str) and _SHA256.fullmatch(digest):
        receipt["payload_sha256"] = digest
    return receipt


def _refusal(status: int, body: bytes | None) -> str:
    """A short reason from a refusal (``error``/``detail`` text when the body has one)."""
    reason = f"HTTP {status}"
    doc = _json(body) or {}
    for key in ("error", "detail", "message"):
        text = doc.get(key)
        if isinstance(text, str) and text:
            return f"{reason}: {text[:200]}"
    return reason


def _always(_: Heartbeat) -> str | None:
    return None


class Sender:
    """POSTs heartbeats to one endpoint.

    :param secret: the instance secret, sent as ``Authorization: Bearer …`` (never logged).
    :param transport: an ``httpx`` transport (tests: ``httpx.MockTransport``);
        default: the real network (see :mod:`worker.transport`).
    :param attempt_timeout: seconds one attempt may take in all (real network only).
    :param max_answer: bytes of an answer read at most.
    :param clock: unix seconds, for ``Retry-After`` dates.
    :param sleep: what waits between attempts (tests pass a recorder).
    :param stop_event: when set, no further attempt starts.
    :param on_wait: called before each wait between attempts (the worker renews
        its lease there).
    :param gate: asked before every attempt whether the heartbeat may still go.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        version: str,
        policy: RetryPolicy,
        secret: str | None = None,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        max_answer: int = MAX_ANSWER_BYTES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
        gate: Gate = _always,
    ) -> None:
        self.endpoint = endpoint
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._stop_event = stop_event
        self._on_wait = on_wait
        self._gate = gate
        self._attempt_timeout = attempt_timeout
        self._max_answer = max_answer
        self._deadline = Deadline()
        headers = {"User-Agent": f"helios-telemetry/{version}"}
        if secret is not None:
            headers[AUTHORIZATION_HEADER] = bearer(secret)
        self._client = build_client(
            endpoint,
            headers=headers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            deadline=self._deadline,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _post(self, hb: Heartbeat) -> tuple[int, httpx.Headers, bytes | None]:
        request = self._client.build_request(
            "POST",
            self.endpoint,
            content=hb.payload,
            headers={"Idempotency-Key": hb.id, "Content-Type": "application/json"},
        )
        self._deadline.start(self._attempt_timeout)
        try:
            response = self._client.send(request, stream=True)
            try:
                body = read_answer(response, self._max_answer)
            finally:
                response.close()
        finally:
            self._deadline.clear()
        return response.status_code, response.headers, body

    def _attempt(self, hb: Heartbeat) -> tuple[Sent | Rejected | Retired, int, bytes | None]:
        try:
            status, headers, body = self._post(hb)
        except httpx.TimeoutException as e:
            raise RetryableDelivery(Retry(None, f"timeout ({type(e).__name__})")) from e
        except httpx.TransportError as e:
            raise RetryableDelivery(Retry(None, f"network error ({type(e).__name__}: {e})")) from e
        outcome = classify(status, headers, now=self._clock())
        log.debug(
            "heartbeat %s: HTTP %d (%d bytes sent, answer %s)",
            hb.id,
            status,
            len(hb.payload),
            "over the limit" if body is None else f"{len(body)} bytes",
        )
        if isinstance(outcome, Retry):
            raise RetryableDelivery(outcome)
        return outcome, status, body

    def _before_sleep(self, hb: Heartbeat) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            log.debug(
                "heartbeat %s: attempt %d failed, next in %.1f s",
                hb.id,
                state.attempt_number,
                state.upcoming_sleep,
            )
            if self._on_wait is not None:
                self._on_wait()

        return before_sleep

    def deliver(self, hb: Heartbeat) -> Delivery:
        """Try to deliver ``hb`` within one cycle of the retry policy; never raises for HTTP."""
        attempts = 0

        def attempt() -> tuple[Sent | Rejected | Retired, int, bytes | None]:
            nonlocal attempts
            refused = self._gate(hb)  # in the same read: still on, still pending?
            if refused is not None:
                raise Withdrawn(refused)
            attempts += 1
            return self._attempt(hb)

        retrying = self._policy.retrying(
            sleep=self._sleep, stop_event=self._stop_event, before_sleep=self._before_sleep(hb)
        )
        try:
            outcome, status, body = retrying(attempt)
        except Withdrawn as e:
            return Delivery(hb.id, "withdrawn", attempts, error=str(e))
        except RetryableDelivery as e:
            return Delivery(
                hb.id,
                "pending",
                attempts,
                status=e.outcome.status,
                error=e.outcome.reason,
                retry_after=e.outcome.retry_after,
            )
        if isinstance(outcome, Retired):
            return Delivery(
                hb.id, "retired", attempts, status=status, error="HTTP 410: endpoint retired"
            )
        if isinstance(outcome, Rejected):
            return Delivery(
                hb.id,
                "rejected",
                attempts,
                status=status,
                error=_refusal(status, body),
                receipt=_receipt(status, body),
            )
        receipt = _receipt(status, body)
        theirs = receipt.get("payload_sha256")
        mismatch = theirs is not None and theirs != hb.payload_sha256
        receipt["payload_sha256_matches"] = None if theirs is None else not mismatch
        error = None
        if mismatch:
            error = (
                f"payload_sha256 mismatch: the receiver stored {theirs}, "
                f"this heartbeat is {hb.payload_sha256}"
            )
            log.error("heartbeat %s: %s", hb.id, error)
        return Delivery(
            hb.id,
            "sent",
            attempts,
            status=status,
            error=error,
            receipt=receipt,
            hash_mismatch=mismatch,
        )
