"""The retry policy as data: classification, Retry-After, and the tenacity strategies on
constructed retry states (nothing sleeps)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from tenacity import RetryCallState, Retrying

from tests.support.clock import T0
from worker.errors import RetryableDelivery
from worker.retry import (
    CYCLE_BASE,
    CYCLE_CAP,
    RETRY_AFTER_CAP,
    Rejected,
    Retired,
    Retry,
    RetryPolicy,
    Sent,
    classify,
    cycle_delay,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_sent(status: int) -> None:
    assert classify(status, {}, now=T0) == Sent(status)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    outcome = classify(status, {}, now=T0)
    assert outcome == Retry(status, f"HTTP {status}", None)


@pytest.mark.parametrize("status", [400, 409, 413, 422, 401, 403, 404, 405, 418, 451])
def test_other_4xx_are_rejected(status: int) -> None:
    assert classify(status, {}, now=T0) == Rejected(status, f"HTTP {status}")


def test_410_retires_the_endpoint() -> None:
    assert classify(410, {}, now=T0) == Retired(410)


def test_a_redirect_is_retried_and_says_where() -> None:
    outcome = classify(308, {"Location": "https://new.example/api"}, now=T0)
    assert isinstance(outcome, Retry)
    assert "https://new.example/api" in outcome.reason


def test_retry_after_seconds_and_http_date() -> None:
    assert classify(503, {"Retry-After": "120"}, now=T0) == Retry(503, "HTTP 503", 120.0)
    date = format_datetime(datetime.fromtimestamp(T0 + 90, UTC), usegmt=True)
    assert classify(429, {"retry-after": date}, now=T0) == Retry(429, "HTTP 429", 90.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("3600", 3600.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 25 Nov 2026 09:00:00 GMT", 0.0),  # in the past: no wait
        ("Wed, 25 Nov 2026 10:00:30 GMT", 30.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=T0) == expected


def state(attempt: int, exc: BaseException | None = None) -> RetryCallState:
    """A retry state after ``attempt`` attempts, the last one failing with ``exc``."""
    s = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    s.attempt_number = attempt
    if exc is not None:
        s.set_exception((type(exc), exc, None))
    return s


def failure(status: int | None = 503, retry_after: float | None = None) -> RetryableDelivery:
    return RetryableDelivery(Retry(status, "HTTP 503", retry_after))


def test_wait_is_full_jitter_exponential_capped() -> None:
    wait = RetryPolicy(attempts=10, max_wait=8.0).wait()
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        samples = [wait(state(attempt, failure())) for _ in range(400)]
        assert all(0.0 <= w <= ceiling for w in samples)
        assert max(samples) > 0.8 * ceiling  # full jitter: the whole window is used
        assert min(samples) < 0.2 * ceiling


def test_retry_after_is_a_minimum() -> None:
    wait = RetryPolicy(max_wait=60.0).wait()
    assert all(wait(state(1, failure(retry_after=30.0))) >= 30.0 for _ in range(200))
    # a tiny Retry-After does not shorten the backoff below its own draw
    assert max(wait(state(5, failure(retry_after=0.5))) for _ in range(200)) > 10.0


def test_retry_after_is_clamped_to_the_max_wait() -> None:
    wait = RetryPolicy(max_wait=60.0).wait()
    assert wait(state(1, failure(retry_after=3600.0))) == 60.0
    assert wait(state(1, failure(retry_after=-10.0))) <= 1.0


def test_stop_after_the_attempts_of_one_cycle() -> None:
    stop = RetryPolicy(attempts=4).stop()
    assert not stop(state(3, failure()))
    assert stop(state(4, failure()))


def test_stop_at_once_when_retry_after_exceeds_what_the_cycle_may_wait() -> None:
    stop = RetryPolicy(attempts=4, max_wait=60.0).stop()
    assert stop(state(1, failure(retry_after=61.0)))
    assert not stop(state(1, failure(retry_after=60.0)))


def test_stop_when_the_worker_is_asked_to_stop() -> None:
    event = threading.Event()
    stop = RetryPolicy(attempts=4).stop(event)
    assert not stop(state(1, failure()))
    event.set()
    assert stop(state(1, failure()))


def test_retrying_waits_through_the_injected_sleep_and_reraises() -> None:
    slept: list[float] = []
    calls = 0

    def always_503() -> None:
        nonlocal calls
        calls += 1
        raise failure(retry_after=2.0)

    r = RetryPolicy(attempts=3, max_wait=5.0).retrying(sleep=slept.append)
    with pytest.raises(RetryableDelivery):
        r(always_503)
    assert calls == 3
    assert len(slept) == 2 and all(2.0 <= s <= 5.0 for s in slept)


def test_only_retryable_failures_are_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not a delivery problem")

    with pytest.raises(ValueError):
        RetryPolicy(attempts=5).retrying(sleep=lambda _: None)(broken)
    assert calls == 1


def test_cycle_delay_grows_and_is_capped() -> None:
    assert cycle_delay(1, None, u=0.0) == CYCLE_BASE / 2
    assert cycle_delay(1, None, u=0.999) == pytest.approx(CYCLE_BASE, rel=1e-3)
    assert cycle_delay(3, None, u=0.999) == pytest.approx(4 * CYCLE_BASE, rel=1e-3)
    assert cycle_delay(50, None, u=0.999) == pytest.approx(CYCLE_CAP, rel=1e-3)
    assert cycle_delay(50, None, u=0.0) == CYCLE_CAP / 2


def test_cycle_delay_honours_retry_after_up_to_a_day() -> None:
    assert cycle_delay(1, 7200.0, u=0.5) == 7200.0
    assert cycle_delay(1, 10 * 86400.0, u=0.5) == RETRY_AFTER_CAP
