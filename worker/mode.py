"""What a worker may do with the outbox in this cycle: a pure function of the decision.

Only an explicit opt-out deletes (DESIGN.md section 3). A worker whose environment
merely says nothing (telemetry off by default) while the processes that track
collect (they record what decided their state in the outbox, meta ``writers``)
*holds back*: it sends nothing, deletes nothing, and says so loudly every cycle
with the fix. And when the app keeps its counts local (``HELIOS_TELEMETRY_ENABLED=local``)
but the worker would send, the more private of the two wins: kept here, never sent.

========  ===============================================================
``send``  mode on: seal and deliver
``local`` seal as ``local`` (kept here, never sent)
``erase`` an explicit opt-out: erase what was not sent
``hold``  off by default with unsent data: touch nothing, warn
``idle``  off, nothing waiting
========  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from outbox.config import ENABLED, Decision

Action = Literal["send", "local", "erase", "hold", "idle"]


@dataclass(frozen=True)
class Plan:
    action: Action
    decision: Decision
    #: Logged as a WARNING and kept in meta ``worker_held_back`` (``outbox status``).
    warning: str | None = None


def _app(writers: Mapping[str, Any] | None) -> str:
    if not writers:
        return ""
    mode, source = writers.get("mode"), writers.get("source")
    if source == ENABLED:
        value = "local" if mode == "local" else "true"
        return f" (the app that tracks runs with {ENABLED}={value})"
    return f" (the app that tracks is {mode}, decided by {source})"


def plan(
    decision: Decision, *, writers: Mapping[str, Any] | None, unsent: int, pending: bool
) -> Plan:
    """What to do, given this worker's decision, what the writers recorded, and what waits.

    :param unsent: counts not sealed yet; ``pending``: a sealed heartbeat waits.
    """
    if decision.mode == "off":
        if decision.opt_out:
            return Plan("erase", decision)
        if not unsent and not pending:
            return Plan("idle", decision)
        waiting = f"{unsent} unsent count{'s' if unsent != 1 else ''}" + (
            " and a sealed heartbeat" if pending else ""
        )
        fix = (
            f"{ENABLED}=local" if writers and writers.get("mode") == "local" else f"{ENABLED}=true"
        )
        return Plan(
            "hold",
            decision,
            f"telemetry is off for this worker ({decision.reason}), but {waiting} wait in the "
            f"outbox{_app(writers)}: nothing is sent and nothing is deleted. Start the worker "
            f"with the app's environment ({fix}), or let the organisation choose: "
            "`outbox enable` sends them, `outbox disable` deletes them",
        )
    if decision.mode == "on" and writers and writers.get("mode") == "local":
        return Plan(
            "local",
            decision,
            f"this worker would send ({decision.reason}), but the app that tracks keeps its "
            f"counts local ({ENABLED}=local): the more private wins, heartbeats are kept here "
            f"and never sent. Give both the same {ENABLED}",
        )
    return Plan("local" if decision.mode == "local" else "send", decision)
