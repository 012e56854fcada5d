"""Consent holds in the worker: an opt-out wins every race, and while off no connection is
made to any address, whatever the reason for being off."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox import Telemetry, consent, db, heartbeats
from tests.support.clock import FakeClock
from tests.support.env import recording_connects
from tests.support.receiver import Receiver, Scripted
from worker.loop import Worker
from worker.retry import RetryPolicy


def switch_off(db_path: Path) -> None:
    """The organisation opts out from another connection (the privacy page, `outbox disable`)."""
    conn = db.connect(db_path)
    try:
        consent.switch(conn, False, now=0)
    finally:
        conn.close()


def test_an_opt_out_between_two_attempts_stops_the_delivery(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    db_path: Path,
) -> None:
    t = make_telemetry()
    t.track_command("sync", 7)
    receiver.script.append(Scripted(503))
    # The wait between attempt 1 and 2 is where the administrator switches off.
    w = make_worker(
        endpoint=receiver.url,
        retry=RetryPolicy(attempts=5),
        sleep=lambda _seconds: switch_off(db_path),
    )
    s = w.tick(clock.now, force=True)
    [d] = s.deliveries
    assert (d.result, d.attempts) == ("withdrawn", 1)
    assert d.error is not None and d.error.startswith("telemetry was switched off")
    assert len(receiver.requests) == 1  # no POST after the switch
    assert receiver.totals() == {}  # the one before it was refused (503): nothing counted
    assert heartbeats.history(w.conn) == []  # erased by the opt-out, not marked by the worker


def test_an_opt_out_during_a_slow_attempt_is_the_last_attempt(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
    db_path: Path,
) -> None:
    t = make_telemetry()
    t.track_command("sync", 7)
    receiver.script.append(Scripted(503))
    receiver.gate.clear()  # hold the answer: the attempt is slow
    w = make_worker(endpoint=receiver.url, retry=RetryPolicy(attempts=5), sleep=lambda _: None)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(w.tick(clock.now, force=True)))
    thread.start()
    assert receiver.arrived.wait(10)
    switch_off(db_path)  # while the POST waits for its answer
    receiver.gate.set()
    thread.join(30)
    [summary] = result
    [d] = summary.deliveries  # type: ignore[attr-defined]
    assert (d.result, d.attempts) == ("withdrawn", 1)
    assert len(receiver.requests) == 1 and receiver.totals() == {}


def test_the_gate_reads_the_heartbeat_too(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    """A heartbeat settled meanwhile (an `outbox receipt`, a second worker) is not sent again."""
    t = make_telemetry()
    t.track_command("sync")
    receiver.script.append(Scripted(503))

    def settle_elsewhere(_seconds: float) -> None:
        hb = heartbeats.pending(w.conn)
        assert hb is not None
        heartbeats.settle(w.conn, hb.id, status="sent", now=0, attempts=0)

    w = make_worker(endpoint=receiver.url, retry=RetryPolicy(attempts=5), sleep=settle_elsewhere)
    [d] = w.tick(clock.now, force=True).deliveries
    assert d.result == "withdrawn" and "no longer pending (sent)" in (d.error or "")
    assert len(receiver.requests) == 1


WAYS_OFF = {
    "DO_NOT_TRACK": ({"env_enabled": "true", "do_not_track": True}, None),
    "ENABLED=false": ({"env_enabled": "false"}, None),
    "organisation off": ({"env_enabled": "true"}, False),
    "default, holding back": ({"env_enabled": None}, None),
}


@pytest.mark.parametrize("way", list(WAYS_OFF))
def test_while_off_no_connection_is_made_to_any_address(
    make_worker: Callable[..., Worker],
    make_telemetry: Callable[..., Telemetry],
    clock: FakeClock,
    way: str,
) -> None:
    """Every socket.connect of the process is watched (an audit hook), so this holds for
    every address, not only a test receiver's."""
    worker_env, org = WAYS_OFF[way]
    t = make_telemetry()
    t.track_command("sync", 2)
    if org is not None:
        t.set_enabled(org)
    with recording_connects() as seen:
        w = make_worker(endpoint="http://127.0.0.1:9/api/instances/heartbeat", **worker_env)
        s = w.tick(clock.now, force=True)
        s = w.tick(clock.now + 86400 * 3)  # and later, when a heartbeat would be due
    assert s.mode == "off"
    assert seen == []
    assert w.delivery._sender is None  # no HTTP client was even built


def test_the_watch_sees_a_connection_when_on(
    make_worker: Callable[..., Worker], make_telemetry: Callable[..., Telemetry], clock: FakeClock
) -> None:
    """The control for the test above: the same worker, on, tries to connect (and fails)."""
    make_telemetry().track_command("sync")
    with recording_connects() as seen:
        w = make_worker(
            endpoint="http://127.0.0.1:9/api/instances/heartbeat",
            retry=RetryPolicy(attempts=1),
        )
        w.tick(clock.now, force=True)
    assert seen == [("127.0.0.1", 9)]
