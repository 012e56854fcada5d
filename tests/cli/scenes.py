"""Outbox states shared by several test modules, built through the library."""

from __future__ import annotations

from tests.cli.conftest import HB, Outbox
from tests.support.clock import T0, FakeClock

ON = {"HELIOS_TELEMETRY_ENABLED": "true"}


def busy(outbox: Outbox, clock: FakeClock) -> None:
    """One heartbeat sent, one in flight after two failed attempts, six events pending,
    one invalid name dropped, a worker holding the lease and the next seal due.

    Times (T0 = 2026-11-25 10:00 UTC): sent at 10:01, the second sealed at 11:01,
    the command runs at 11:11 with the lease until 11:16 and the next seal at 12:01.
    """
    outbox.track_many([("api", "users.list", 12), ("api", "groups.get", 3), ("command", "sync", 1)])
    outbox.instance()
    outbox.send(HB[0])  # sealed at T0, sent at T0 + 60
    clock.advance(3600)
    outbox.track_many([("api", "users.list", 5), ("ui", "bulk_edit", 2)])
    outbox.seal(HB[1])  # T0 + 3660
    outbox.attempt(HB[1], "HTTP 503 Service Unavailable")
    outbox.attempt(HB[1], "HTTP 503 Service Unavailable")
    clock.advance(600)  # T0 + 4260 = 11:11
    outbox.track_many([("command", "deploy", 4), ("ui", "export_csv", 1), ("ui", "bulk_edit", 1)])
    assert not outbox.telemetry.track("ui", "bob@example.com")  # refused, counted
    outbox.set_meta("next_due_at", T0 + 7260)
    outbox.lease(4242, acquired_at=T0, expires_at=T0 + 4560)


def history(outbox: Outbox, clock: FakeClock) -> Outbox:
    """Sequences 1-5: sent, sent (after two 503s), rejected, local, and one pending."""
    busy(outbox, clock)  # 1 sent, 2 pending (two 503s)
    clock.advance(120)
    outbox.settle(HB[1], "sent", attempts=1, receipt={"status": "duplicate"})  # 3 attempts
    outbox.track("command", "sync")
    outbox.seal(HB[2])
    outbox.settle(HB[2], "rejected", attempts=1, error="HTTP 422 " + "x" * 120)
    clock.advance(86400)
    outbox.track("command", "sync")
    outbox.seal(HB[3], local=True)
    outbox.track("ui", "bulk_edit")
    outbox.seal(HB[4])
    outbox.attempt(HB[4], "ConnectError: [Errno 111] Connection refused")
    return outbox
