"""Offline sites: an exported heartbeat file in, a receipt out (pure).

An air-gapped instance writes its pending heartbeat to a file (``outbox export``:
:class:`outbox.contract.Export`, the frozen payload bytes and the instance's
``Authorization`` value). Someone carries it to the collector, which ingests it with
``outbox-collector import FILE…`` or ``POST /api/instances/import``: the same
validation, credential check and idempotency as the endpoint, since the payload bytes
are the ones the worker would have POSTed. The answer is a
:class:`outbox.contract.Receipt`, which ``outbox receipt`` turns into "delivered".
"""

from __future__ import annotations

import dataclasses

from collector.errors import PayloadError, Unauthorized
from collector.records import Outcome
from collector.validate import DEFAULT_LIMITS, Heartbeat, Limits, parse
from outbox.contract import ContractError, Export, Receipt, iso_utc, secret_hash

NO_CREDENTIAL = (
    "the export carries no instance secret and none was sent as Authorization: Bearer: "
    "export it again with `outbox export` (it includes the secret), or send the header"
)


def max_export_bytes(limits: Limits) -> int:
    """The largest export file read: the base64 of the largest body, with room for the
    other fields."""
    return 2 * limits.max_body + 4096


def read_export(
    data: bytes, *, secret: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Heartbeat:
    """The heartbeat in an export file, validated as the endpoint validates a body.

    :param secret: the instance secret from an ``Authorization`` header, which wins
        over the file's own.
    :raises PayloadError: not an export file (400), altered, or an invalid heartbeat.
    :raises Unauthorized: no secret at all.
    """
    if len(data) > max_export_bytes(limits):
        raise PayloadError(413, f"the file is larger than an export of {limits.max_body} bytes")
    try:
        export = Export.from_bytes(data)
    except ContractError as e:
        raise PayloadError(400, str(e)) from None
    hb = parse(export.payload, limits=limits)
    for field, said, inside in (
        ("heartbeat_id", export.heartbeat_id, hb.heartbeat_id),
        ("instance_id", export.instance_id, hb.instance_id),
        ("sequence", export.sequence, hb.sequence),
    ):
        if said != inside:
            raise PayloadError(
                422, f"the file's {field} is not the one in its payload: it was altered", field
            )
    credential = secret or export.secret
    if credential is None:
        raise Unauthorized(NO_CREDENTIAL)
    return dataclasses.replace(hb, credential=secret_hash(credential))


def receipt(hb: Heartbeat, outcome: Outcome, *, now: int) -> Receipt:
    """The receipt for an imported heartbeat that was accepted or was a duplicate."""
    if outcome.status not in ("accepted", "duplicate"):
        raise ValueError(f"no receipt for a heartbeat that was {outcome.status}")
    return Receipt(
        heartbeat_id=hb.heartbeat_id,
        instance_id=hb.instance_id,
        status="accepted" if outcome.status == "accepted" else "duplicate",
        payload_sha256=outcome.payload_sha256,
        received_at=iso_utc(now),
    )
