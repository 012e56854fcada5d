"""Sending one heartbeat: its frozen bytes, POSTed with retries, and what the receiver answered.

The ``httpx.Client`` is built once per :class:`Sender` (the transport is
injectable: tests pass ``httpx.MockTransport``). With the default transport,
proxies (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and the CA bundle
(``SSL_CERT_FILE``, ``SSL_CERT_DIR``) come from the standard environment
variables (``trust_env``). Redirects are not followed: a heartbeat goes to the
configured endpoint or nowhere.

Every attempt sends the stored bytes unchanged, with the heartbeat id as
``Idempotency-Key``. Nothing here logs a payload: ids, sizes and statuses only.
"""

from __future__ import annotations

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
from worker.errors import RetryableDelivery
from worker.retry import Rejected, Retired, Retry, RetryPolicy, Sent, classify

log = logging.getLogger("worker.sender")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

_SHA256 = re.compile(r"[0-9a-f]{64}")

Result = Literal["sent", "rejected", "retired", "pending"]


@dataclass(frozen=True)
class Delivery:
    """What one delivery cycle of one heartbeat came to.

    ``pending``: the attempts of this cycle ran out (or the receiver asked for a
    long pause); the heartbeat stays pending for the next cycle.
    """

    heartbeat_id: str
    result: Result
    attempts: int
    status: int | None = None  # the last HTTP status, None when no answer came
    error: str | None = None
    retry_after: float | None = None
    receipt: dict[str, Any] | None = field(default=None)
    hash_mismatch: bool = False


def _receipt(response: httpx.Response) -> dict[str, Any]:
    """The parts of the receiver's answer worth keeping (never its whole body)."""
    receipt: dict[str, Any] = {"http_status": response.status_code}
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return receipt
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, str):
            receipt["status"] = status[:32]
        digest = body.get("payload_sha256")
        if isinstance(digest, str) and _SHA256.fullmatch(digest):
            receipt["payload_sha256"] = digest
    return receipt


def _refusal(response: httpx.Response) -> str:
    """A short reason from a refusal (``error``/``detail`` text when the body has one)."""
    reason = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return reason
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            text = body.get(key)
            if isinstance(text, str) and text:
                return f"{reason}: {text[:200]}"
    return reason


class Sender:
    """POSTs heartbeats to one endpoint.

    :param secret: the instance secret, sent as ``Authorization: Bearer …`` (never logged).
    :param transport: an ``httpx`` transport (tests: ``httpx.MockTransport``);
        default: the real network, with proxies and CA bundle from the environment.
    :param clock: unix seconds, for ``Retry-After`` dates.
    :param sleep: what waits between attempts (tests pass a recorder).
    :param stop_event: when set, no further attempt starts.
    :param on_wait: called before each wait between attempts (the worker renews
        its lease there).
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
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._policy = policy
        self._auth = {} if secret is None else {AUTHORIZATION_HEADER: bearer(secret)}
        self._clock = clock
        self._sleep = sleep
        self._stop_event = stop_event
        self._on_wait = on_wait
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=connect_timeout,
            ),
            trust_env=True,
            follow_redirects=False,
            headers={"User-Agent": f"helios-telemetry/{version}"},
        )

    def close(self) -> None:
        self._client.close()

    def _attempt(self, hb: Heartbeat) -> tuple[Sent | Rejected | Retired, httpx.Response]:
        try:
            response = self._client.post(
                self.endpoint,
                content=hb.payload,
                headers={
                    "Idempotency-Key": hb.id,
                    "Content-Type": "application/json",
                    **self._auth,
                },
            )
        except httpx.TimeoutException as e:
            raise RetryableDelivery(Retry(None, f"timeout ({type(e).__name__})")) from e
        except httpx.TransportError as e:
            raise RetryableDelivery(Retry(None, f"network error ({type(e).__name__}: {e})")) from e
        outcome = classify(response.status_code, response.headers, now=self._clock())
        log.debug(
            "heartbeat %s: HTTP %d (%d bytes sent)", hb.id, response.status_code, len(hb.payload)
        )
        if isinstance(outcome, Retry):
            raise RetryableDelivery(outcome)
        return outcome, response

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

        def attempt() -> tuple[Sent | Rejected | Retired, httpx.Response]:
            nonlocal attempts
            attempts += 1
            return self._attempt(hb)

        retrying = self._policy.retrying(
            sleep=self._sleep, stop_event=self._stop_event, before_sleep=self._before_sleep(hb)
        )
        try:
            outcome, response = retrying(attempt)
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
                hb.id,
                "retired",
                attempts,
                status=outcome.status,
                error="HTTP 410: endpoint retired",
            )
        if isinstance(outcome, Rejected):
            return Delivery(
                hb.id,
                "rejected",
                attempts,
                status=outcome.status,
                error=_refusal(response),
                receipt=_receipt(response),
            )
        receipt = _receipt(response)
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
            status=outcome.status,
            error=error,
            receipt=receipt,
            hash_mismatch=mismatch,
        )
