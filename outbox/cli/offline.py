"""``outbox export`` and ``outbox receipt``: a heartbeat carried by hand to the collector."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from outbox import offline, store
from outbox.cli.context import CliContext
from outbox.cli.fmt import human_bytes, short_id
from outbox.config import EDITION, VERSION
from outbox.contract import ContractError, Receipt
from worker.lease import Lease

#: Seconds the worker lease is held while exporting (one seal: seconds at most).
_EXPORT_LEASE = 120.0


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by this user only (it holds the credential)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


@click.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the heartbeat to this file (mode 0600) instead of standard output.",
)
@click.pass_obj
def export_command(obj: CliContext, output: Path | None) -> None:
    """Write the pending heartbeat to a file, for a site the collector cannot be reached from.

    Seals the unsent counts first when no heartbeat is pending. The file holds the
    frozen bytes exactly as the worker would send them, their hash, and this
    instance's credential (keep it as you keep the outbox). Upload it to the
    collector (outbox-collector import, or its upload form), then give the
    receipt to `outbox receipt` to mark it delivered. Exporting again before that
    writes the same heartbeat again.

    Example:

    \b
        outbox export -o heartbeat.json
    """
    cfg = obj.config().require(EDITION, VERSION)
    with obj.writing() as conn:
        decision = cfg.decision(store.org_enabled(conn))
        if not decision.sending:
            raise click.ClickException(
                f"telemetry is {decision.mode} ({decision.reason}): nothing is exported; "
                + ("`outbox enable` turns sharing on" if not decision.locked else "")
            )
        # Sealing is a worker's step: hold the worker lease meanwhile, so that no worker
        # compacts the rows this seal is reading (one worker per outbox).
        lease = Lease(conn, ttl=_EXPORT_LEASE)
        holder = lease.acquire(obj.now())
        if holder is not None:
            raise click.ClickException(
                f"a worker (pid {holder.pid} on {holder.host}) holds this outbox and delivers "
                "its heartbeats; stop it before exporting by hand, or let it send"
            )
        try:
            done = offline.export(conn, cfg, now=obj.now())
        finally:
            lease.release(obj.now())
    if done is None:
        click.echo("nothing to export: no heartbeat is pending and no counts wait", err=True)
        return
    data = done.export.to_bytes()
    where = "standard output"
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write_private(output, data)
        where = str(output)
    what = "sealed and exported" if done.sealed_now else "exported (again)"
    click.echo(
        f"{what} heartbeat {short_id(done.export.heartbeat_id)} (sequence "
        f"{done.export.sequence}, {human_bytes(len(done.export.payload))}) to {where}; "
        "after the upload, mark it delivered with `outbox receipt RECEIPT`",
        err=True,
    )


@click.command("receipt")
@click.argument("file", metavar="FILE|-")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_obj
def receipt_command(obj: CliContext, file: str, as_json: bool) -> None:
    """Mark an exported heartbeat delivered, from the collector's receipt (FILE, or - for stdin).

    The receipt must name this outbox's instance, the heartbeat, and the hash of the
    bytes that were exported; anything else is refused and nothing changes.

    Example:

    \b
        outbox receipt receipt.json
    """
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as e:
        raise click.ClickException(f"cannot read the receipt {file}: {e.strerror or e}") from e
    try:
        receipt = Receipt.from_bytes(data)
    except ContractError as e:
        raise click.ClickException(f"{file}: {e}") from e
    with obj.writing() as conn:
        applied = offline.apply_receipt(conn, receipt, now=obj.now())
    hb = applied.heartbeat
    if as_json:
        doc = {
            "heartbeat_id": hb.id,
            "sequence": hb.sequence,
            "status": hb.status,
            "outcome": applied.outcome,
            "collector": receipt.status,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if applied.outcome == "already":
        click.echo(f"heartbeat {short_id(hb.id)} (sequence {hb.sequence}) was already delivered")
    else:
        click.echo(
            f"heartbeat {short_id(hb.id)} (sequence {hb.sequence}) marked delivered "
            f'(the collector answered "{receipt.status}"); the next one can be exported'
        )
