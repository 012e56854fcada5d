"""The sender against ``httpx.MockTransport``: what is sent, what is retried, what is kept."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

import httpx
import pytest

from outbox.contract import encode, sha256_hex
from outbox.heartbeats import Heartbeat
from tests.support.clock import T0
from tests.support.receiver import Receiver
from worker.retry import RetryPolicy
from worker.sender import Sender

URL = "https://telemetry.example/api/instances/heartbeat"
SECRET = "s3cr3t-0123456789abcdefghijklmnopqrstuvwxyz"
HID = "0b4f6c1e-1111-4222-8333-944455556666"
PAYLOAD = encode(
    {
        "schema_version": 1,
        "heartbeat_id": HID,
        "instance_id": "5d0c6a0e-2b7f-4d1c-9a3e-0f1e2d3c4b5a",
        "sequence": 17,
        "period_start": "2026-11-25T10:00:00Z",
        "period_end": "2026-11-25T11:00:00Z",
        "app": {"version": "1.4.2", "edition": "community"},
        "api_usage": {"secretish.lookup": 12},
        "command_usage": {},
        "ui_actions": {},
        "days": {
            "2026-11-25": {
                "api_usage": {"secretish.lookup": 12},
                "command_usage": {},
                "ui_actions": {},
            }
        },
        "dropped": {"invalid_name": 0, "storage_error": 0, "over_capacity": 0},
    }
)
HB = Heartbeat(
    id=HID,
    sequence=17,
    first_event_id=0,
    last_event_id=12,
    period_start="2026-11-25T10:00:00Z",
    period_end="2026-11-25T11:00:00Z",
    payload=PAYLOAD,
    payload_sha256=sha256_hex(PAYLOAD),
    status="pending",
    attempts=0,
    last_error=None,
    receipt=None,
    sealed_at=T0,
    last_attempt_at=None,
    settled_at=None,
)


def ok(status: str = "accepted", digest: str | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={"status": status, "payload_sha256": digest or hashlib.sha256(PAYLOAD).hexdigest()},
    )


class Script:
    """A MockTransport handler answering from a list, recording every request."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer


def sender(
    script: Script, sleeps: list[float], *, attempts: int = 5, max_wait: float = 30.0
) -> Sender:
    return Sender(
        endpoint=URL,
        version="1.4.2",
        policy=RetryPolicy(attempts=attempts, max_wait=max_wait),
        secret=SECRET,
        transport=httpx.MockTransport(script),
        clock=lambda: T0,
        sleep=sleeps.append,
    )


def test_503_then_200_is_sent_on_the_second_attempt() -> None:
    script, sleeps = Script(httpx.Response(503), ok()), []
    d = sender(script, sleeps).deliver(HB)
    assert (d.result, d.attempts, d.status) == ("sent", 2, 200)
    assert d.receipt == {
        "http_status": 200,
        "status": "accepted",
        "payload_sha256": HB.payload_sha256,
        "payload_sha256_matches": True,
    }
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0  # first backoff window: up to 1 s


def test_every_attempt_sends_the_stored_bytes_and_the_contract_headers() -> None:
    script = Script(
        httpx.Response(500),
        httpx.Response(502),
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        ok(),
    )
    d = sender(script, []).deliver(HB)
    assert d.result == "sent" and d.attempts == 5
    assert [r.content for r in script.requests] == [PAYLOAD] * 5
    for r in script.requests:
        assert r.method == "POST" and str(r.url) == URL
        assert r.headers["idempotency-key"] == HID
        assert r.headers["content-type"] == "application/json"
        assert r.headers["user-agent"] == "helios-telemetry/1.4.2"
        assert r.headers["authorization"] == f"Bearer {SECRET}"
        assert SECRET.encode() not in r.content  # the credential never goes into the body


def test_429_with_retry_after_waits_at_least_that_long() -> None:
    script, sleeps = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok()), []
    d = sender(script, sleeps, max_wait=30.0).deliver(HB)
    assert d.result == "sent" and d.attempts == 2
    assert len(sleeps) == 1 and 7.0 <= sleeps[0] <= 30.0


def test_retry_after_longer_than_the_cycle_may_wait_ends_the_cycle() -> None:
    script, sleeps = Script(httpx.Response(503, headers={"Retry-After": "3600"}), ok()), []
    d = sender(script, sleeps, max_wait=30.0).deliver(HB)
    assert (d.result, d.attempts, d.retry_after, d.status) == ("pending", 1, 3600.0, 503)
    assert sleeps == [] and len(script.requests) == 1


@pytest.mark.parametrize("status", [400, 413, 422, 409, 403])
def test_4xx_is_rejected_and_not_retried(status: int) -> None:
    script, sleeps = Script(httpx.Response(status, json={"error": "days: not a mapping"})), []
    d = sender(script, sleeps).deliver(HB)
    assert (d.result, d.attempts, d.status) == ("rejected", 1, status)
    assert d.error == f"HTTP {status}: days: not a mapping"
    assert sleeps == [] and len(script.requests) == 1


def test_410_stops_at_once() -> None:
    script, sleeps = Script(httpx.Response(410), ok()), []
    d = sender(script, sleeps).deliver(HB)
    assert (d.result, d.attempts, d.status) == ("retired", 1, 410)
    assert len(script.requests) == 1 and sleeps == []


def test_timeouts_are_retried() -> None:
    script = Script(httpx.ConnectTimeout("no route"), httpx.ReadTimeout("slow"), ok())
    d = sender(script, []).deliver(HB)
    assert (d.result, d.attempts) == ("sent", 3)


def test_attempts_of_one_cycle_run_out_and_it_stays_pending() -> None:
    script, sleeps = Script(httpx.ConnectError("connection refused")), []
    d = sender(script, sleeps, attempts=4).deliver(HB)
    assert (d.result, d.attempts, d.status) == ("pending", 4, None)
    assert d.error is not None and d.error.startswith("network error (ConnectError")
    assert len(sleeps) == 3 and len(script.requests) == 4


def test_a_hash_mismatch_is_recorded_loudly(caplog: pytest.LogCaptureFixture) -> None:
    other = "f" * 64
    d = sender(Script(ok("duplicate", other)), []).deliver(HB)
    assert d.result == "sent" and d.hash_mismatch
    assert d.receipt is not None and d.receipt["payload_sha256_matches"] is False
    assert d.error == (
        f"payload_sha256 mismatch: the receiver stored {other}, "
        f"this heartbeat is {HB.payload_sha256}"
    )
    assert [r.levelno for r in caplog.records if "mismatch" in r.message] == [logging.ERROR]


def test_a_receipt_without_hash_is_kept_as_unknown() -> None:
    d = sender(Script(httpx.Response(202, text="ok")), []).deliver(HB)
    assert d.result == "sent" and not d.hash_mismatch
    assert d.receipt == {"http_status": 202, "payload_sha256_matches": None}


def test_a_hostile_receipt_is_not_stored_whole() -> None:
    answer = httpx.Response(
        200, json={"status": "x" * 10_000, "payload_sha256": "not-hex", "extra": "y" * 10_000}
    )
    d = sender(Script(answer), []).deliver(HB)
    assert d.receipt == {"http_status": 200, "status": "x" * 32, "payload_sha256_matches": None}


def test_nothing_of_the_payload_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(httpx.Response(503), httpx.ConnectError("refused"), ok("duplicate", "0" * 64))
    sender(script, []).deliver(HB)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert HID in text  # ids are logged ...
    assert "secretish" not in text and "5d0c6a0e" not in text  # ... names and the instance are not


def _real_sender(endpoint: str) -> Sender:
    return Sender(
        endpoint=endpoint,
        version="1.4.2",
        policy=RetryPolicy(attempts=1),
        connect_timeout=2.0,
        clock=lambda: T0,
        sleep=lambda _: None,
    )


def test_a_loopback_endpoint_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """HTTP_PROXY and ALL_PROXY are set, yet the POST goes straight to the loopback receiver:
    a heartbeat is never handed in clear text to a proxy."""
    with Receiver() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        s = _real_sender(f"{receiver.url}")
        try:
            d = s.deliver(HB)
        finally:
            s.close()
        assert d.result == "sent"
        assert proxy.connections == 0
    [request] = receiver.posts()
    assert request.path == "/api/instances/heartbeat"  # not an absolute URL: no proxy
    assert request.body == PAYLOAD


@pytest.mark.parametrize(
    ("environ", "via_proxy"),
    [
        ({"HTTPS_PROXY": "{proxy}"}, True),
        ({"https_proxy": "{proxy}", "HTTPS_PROXY": "http://127.0.0.1:9"}, True),  # lowercase wins
        ({"ALL_PROXY": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{proxy}", "NO_PROXY": "example"}, False),
        ({"HTTPS_PROXY": "{proxy}", "no_proxy": "*"}, False),
        ({"HTTP_PROXY": "{proxy}"}, False),  # only for http:// URLs
    ],
)
def test_other_endpoints_follow_the_standard_proxy_variables(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], via_proxy: bool
) -> None:
    from worker.transport import proxy_for

    with Receiver() as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        env = {k: v.format(proxy=url) for k, v in environ.items()}
        assert proxy_for("https://telemetry.example/x", env) == (url if via_proxy else None)
        if not via_proxy:
            return  # going direct would leave the machine: the rule above is the test
        for k in [k for k in os.environ if k.lower().endswith("_proxy")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s = _real_sender("https://telemetry.example/api/instances/heartbeat")
        try:
            d = s.deliver(HB)  # the proxy answers CONNECT with 501: never delivered
        finally:
            s.close()
        assert d.result == "pending"
        assert proxy.connections == 1  # the CONNECT went to the proxy, nothing else anywhere


def test_a_socks_proxy_is_refused_with_the_fix() -> None:
    from outbox.errors import SettingsError
    from worker.transport import proxy_for

    with pytest.raises(SettingsError, match="http.s. proxies only .or set NO_PROXY"):
        proxy_for("https://telemetry.example/x", {"ALL_PROXY": "socks5://127.0.0.1:1080"})
