"""Sites without a network to the collector: a heartbeat carried by hand, and its receipt.

:func:`export` writes the pending heartbeat (sealing one first when none is pending)
as an :class:`~outbox.contract.Export`: its frozen bytes exactly as the worker would
POST them, their hash, and the instance credential the collector asks for. The
collector's ``import`` answers with a :class:`~outbox.contract.Receipt`;
:func:`apply_receipt` marks the heartbeat delivered when the receipt names this
heartbeat, this instance and the very bytes that were exported — so exactly-once
holds as with the endpoint: importing twice counts once, and a receipt for another
heartbeat changes nothing.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from outbox import heartbeats, store
from outbox.config import Config
from outbox.contract import Export, Receipt
from outbox.errors import OutboxError
from outbox.store import Meta


class ReceiptRefused(OutboxError):
    """The receipt does not belong to this outbox's pending heartbeat (the message says why)."""


@dataclass(frozen=True)
class Exported:
    export: Export
    sealed_now: bool  # False: the heartbeat was already pending (exported again, same bytes)


def export(
    conn: sqlite3.Connection,
    config: Config,
    *,
    now: int,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Exported | None:
    """The pending heartbeat as an export, sealing the unsent counts first if none is pending.

    :returns: None when nothing is pending and nothing waits to be sealed.
    """
    sealed_now = False
    hb = heartbeats.pending(conn)
    if hb is None:
        plan = heartbeats.plan_seal(conn)
        hb = heartbeats.commit_seal(
            conn,
            plan,
            heartbeat_id=new_id(),
            now=now,
            version=config.version,
            edition=config.edition,
        )
        if hb is None:
            return None
        sealed_now = True
    creds = store.credentials(conn, new_id)
    store.put(conn, Meta.LAST_EXPORT_AT, now)
    return Exported(
        Export(
            heartbeat_id=hb.id,
            instance_id=creds.instance_id,
            sequence=hb.sequence,
            payload=hb.payload,
            payload_sha256=hb.payload_sha256,
            secret=creds.secret,
        ),
        sealed_now,
    )


@dataclass(frozen=True)
class Applied:
    heartbeat: heartbeats.Heartbeat
    outcome: Literal["marked", "already"]


def apply_receipt(conn: sqlite3.Connection, receipt: Receipt, *, now: int) -> Applied:
    """Mark the heartbeat the receipt names as sent, after checking that it is ours.

    :raises ReceiptRefused: another instance's receipt, an unknown heartbeat, a hash that
        is not the one exported, or a heartbeat already settled otherwise.
    """
    ours = store.existing_instance_id(conn)
    if receipt.instance_id != ours:
        raise ReceiptRefused(
            f"the receipt is for instance {receipt.instance_id}, not this outbox's "
            f"({ours or 'none yet'}): it was made for another Helios"
        )
    hb = heartbeats.get(conn, receipt.heartbeat_id)
    if hb is None:
        raise ReceiptRefused(
            f"no heartbeat {receipt.heartbeat_id} in this outbox (purged, or never exported "
            "from here); nothing was changed"
        )
    if receipt.payload_sha256 != hb.payload_sha256:
        raise ReceiptRefused(
            f"the receipt's payload_sha256 {receipt.payload_sha256[:12]}… is not the hash of "
            f"heartbeat {hb.id} ({hb.payload_sha256[:12]}…): the collector stored other "
            "bytes; nothing was changed"
        )
    if hb.status == "sent":
        return Applied(hb, "already")
    if hb.status != "pending":
        raise ReceiptRefused(f"heartbeat {hb.id} is {hb.status}, not pending: nothing was changed")
    marked = heartbeats.settle(
        conn,
        hb.id,
        status="sent",
        now=now,
        attempts=0,
        receipt={
            "status": receipt.status,
            "payload_sha256": receipt.payload_sha256,
            "payload_sha256_matches": True,
            "received_at": receipt.received_at,
            "via": "import",
        },
    )
    settled = heartbeats.get(conn, hb.id)
    assert settled is not None
    return Applied(settled, "marked" if marked else "already")
