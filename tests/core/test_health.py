"""A worker nobody started is visible: the rule, and where it shows."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from outbox import Telemetry, store
from outbox.health import START_HINT, assess
from outbox.store import Meta
from tests.support.clock import T0, FakeClock

HOUR, DAY = 3600, 86400


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        ("not sharing", {"sending": False, "last_seen_at": None, "oldest": T0 - 9 * DAY}, None),
        ("seen an hour ago", {"last_seen_at": T0 - HOUR}, None),
        ("seen 47 h ago, daily", {"last_seen_at": T0 - 47 * HOUR}, None),
        ("seen 49 h ago, daily", {"last_seen_at": T0 - 49 * HOUR}, "for 49 hours"),
        (
            "seen 3 h ago, hourly",
            {"last_seen_at": T0 - 3 * HOUR, "edition": "licensed"},
            "for 3 hours",
        ),
        ("exported yesterday", {"last_export_at": T0 - DAY, "last_seen_at": T0 - 9 * DAY}, None),
        ("never, fresh counts", {"oldest": T0 - 59 * 60}, None),
        ("never, counts 2 h old", {"oldest": T0 - 2 * HOUR}, "ever run on this outbox"),
        ("never, nothing waits", {"oldest": None}, None),
    ],
)
def test_the_rule(case: str, kwargs: dict[str, object], expected: str | None) -> None:
    args: dict[str, object] = {
        "now": T0,
        "sending": True,
        "edition": "community",
        "last_seen_at": None,
        "last_export_at": None,
        "oldest_unsent_at": kwargs.pop("oldest", None),
    }
    args.update(kwargs)
    message = assess(**args)  # type: ignore[arg-type]
    if expected is None:
        assert message is None, case
    else:
        assert message is not None and expected in message, case
        assert message.endswith(START_HINT)


def test_the_library_says_it_once(
    make_telemetry: Callable[..., Telemetry], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_telemetry()
    assert t.track_command("sync")
    t.close()
    clock.advance(2 * HOUR)  # counts wait two hours; no worker ever ran
    with caplog.at_level(logging.WARNING, logger="outbox"):
        t = make_telemetry()
        for _ in range(50):
            assert t.track_command("sync")
        t.close()
        assert t.track_command("sync")  # reopened: still once for this instance
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "telemetry: no worker has ever run on this outbox and counts have waited 2 hours, so "
        f"nothing is sent; {START_HINT}"
    ]
    health = t.worker()
    assert health is not None and health.missing and health.message == warnings[0][11:]


def test_a_running_worker_is_seen(
    make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    t = make_telemetry()
    assert t.track_command("sync")
    clock.advance(3 * DAY)
    with t.connect() as conn:
        store.put(conn, Meta.WORKER_SEEN_AT, int(clock.now) - 60)
    health = t.worker()
    assert health is not None and not health.missing and health.message is None
