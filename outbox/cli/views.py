"""Read-only commands: ``show``, ``preview``, ``heartbeats``. None of them creates the outbox."""

from __future__ import annotations

import json
from typing import Any

import click

from outbox import heartbeats as hb
from outbox import store
from outbox.cli.context import CliContext
from outbox.cli.fmt import WIDTH, clip, period, plural, short_id, stamp, table
from outbox.config import EDITION, VERSION
from outbox.contract import KINDS, STATUSES, Kind, encode, iso_utc


def _nothing_yet(obj: CliContext) -> str:
    return f"no outbox at {obj.db_path} yet: telemetry has not collected anything"


@click.command()
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of event.")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
@click.pass_obj
def show(obj: CliContext, kind: Any, as_json: bool) -> None:
    """Show the counters derived from the outbox: pending and in flight.

    Pending counts are not in any heartbeat yet; in-flight counts are in the
    heartbeat sealed and waiting for delivery, exactly as it will be sent.

    Example:

    \b
        outbox show --kind api
    """
    with obj.reading() as conn:
        if conn is None:
            pending, flight, waiting = [], [], None
        else:
            pending = store.pending_counters(conn, kind)
            flight = store.inflight_counters(conn, kind)
            waiting = hb.pending(conn)
    merged: dict[tuple[Kind, str], list[int]] = {}
    for c in pending:
        merged.setdefault((c.kind, c.name), [0, 0])[0] += c.count
    for c in flight:
        merged.setdefault((c.kind, c.name), [0, 0])[1] += c.count
    order = {k: i for i, k in enumerate(KINDS)}
    keys = sorted(merged, key=lambda kn: (order[kn[0]], kn[1]))
    totals = [sum(merged[k][0] for k in keys), sum(merged[k][1] for k in keys)]
    if as_json:
        doc = {
            "in_flight_heartbeat": None if waiting is None else waiting.id,
            "counters": [
                {"kind": k, "name": n, "pending": merged[(k, n)][0], "in_flight": merged[(k, n)][1]}
                for k, n in keys
            ],
            "totals": {"pending": totals[0], "in_flight": totals[1]},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if conn is None:
        click.echo(_nothing_yet(obj))
        return
    if not keys:
        what = f"{kind} events" if kind else "events"
        click.echo(f"no {what} pending and none in flight")
        return
    rows = [[k, n, str(merged[(k, n)][0]), str(merged[(k, n)][1])] for k, n in keys]
    rows.append(["total", "", str(totals[0]), str(totals[1])])
    lines = table(["kind", "name", "pending", "in flight"], rows, right={2, 3}, flex=1)
    lines.insert(-1, "")
    click.echo("\n".join(lines))
    if waiting is not None:
        click.echo(
            f"\nin flight: heartbeat {short_id(waiting.id)} (sequence {waiting.sequence}), "
            f"sealed {stamp(waiting.sealed_at)}"
        )


@click.command()
@click.option("--compact", is_flag=True, help="The wire form: compact JSON, as sent.")
@click.pass_obj
def preview(obj: CliContext, compact: bool) -> None:
    """Print the exact JSON the next heartbeat would freeze, now.

    Pending counts with this instance's id, the next sequence number, the
    period, HELIOS_VERSION and HELIOS_EDITION, and the dropped counts; only
    heartbeat_id is null (it is drawn when the heartbeat is sealed). Notes go
    to stderr, so stdout is always the JSON alone.

    Example:

    \b
        outbox preview --compact | wc -c
    """
    # The endpoint and the on/off switch do not shape a payload: only these must be usable.
    cfg = obj.config().require(EDITION, VERSION)
    with obj.reading() as conn:
        if conn is None:
            click.echo(_nothing_yet(obj) + "; nothing would be sent", err=True)
            return
        payload = hb.preview(conn, now=obj.now(), version=cfg.version, edition=cfg.edition)
        waiting = hb.pending(conn)
        decision = cfg.decision(store.org_enabled(conn))
    click.echo(encode(payload).decode("ascii") if compact else json.dumps(payload, indent=2))
    if waiting is not None:
        click.echo(
            f"note: heartbeat {short_id(waiting.id)} (sequence {waiting.sequence}) is in "
            "flight; this would be the next one",
            err=True,
        )
    if decision.mode == "local":
        click.echo("note: telemetry is local: heartbeats are kept here, never sent", err=True)
    elif decision.mode == "off":
        click.echo("note: telemetry is off: nothing is sent", err=True)


def record(h: hb.Heartbeat) -> dict[str, Any]:
    """One heartbeat in ``heartbeats --json``."""
    return {
        "sequence": h.sequence,
        "id": h.id,
        "status": h.status,
        "attempts": h.attempts,
        "period_start": h.period_start,
        "period_end": h.period_end,
        "sealed_at": iso_utc(h.sealed_at),
        "last_attempt_at": None if h.last_attempt_at is None else iso_utc(h.last_attempt_at),
        "settled_at": None if h.settled_at is None else iso_utc(h.settled_at),
        "last_error": h.last_error,
        "receipt": None if h.receipt is None else json.loads(h.receipt),
        "payload_sha256": h.payload_sha256,
        "payload_bytes": len(h.payload),
    }


def _settled(h: hb.Heartbeat) -> str:
    if h.settled_at is None:
        return "-"
    text = stamp(h.settled_at)[:16]
    return text[5:] if text[:4] == h.period_end[:4] else text


@click.command("heartbeats")
@click.option("--status", type=click.Choice(STATUSES), help="Only heartbeats with this status.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="At most this many, newest first.",
)
@click.option(
    "--id",
    "heartbeat_id",
    metavar="ID",
    help="Print this heartbeat's stored payload, byte for byte (a unique prefix will do).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
@click.pass_context
def heartbeats_command(
    ctx: click.Context, status: Any, limit: int, heartbeat_id: str | None, as_json: bool
) -> None:
    """List sealed heartbeats, newest first: status, attempts, last error, when settled.

    A heartbeat is pending (sealed, waiting for delivery), sent, rejected (the
    receiver refused it; kept for inspection, never retried) or local (sealed in
    local mode, never sent). "settled" is when it was sent, rejected or kept.

    Example:

    \b
        outbox heartbeats --status rejected
        outbox heartbeats --id 3f2a1b9c > heartbeat.json
    """
    obj: CliContext = ctx.obj
    if heartbeat_id is not None:
        others = [
            f"--{name}"
            for name in ("status", "limit", "json")
            if ctx.get_parameter_source(name if name != "json" else "as_json")
            is click.core.ParameterSource.COMMANDLINE
        ]
        if others:
            raise click.UsageError(f"--id prints one payload; it does not go with {others[0]}")
        _print_payload(obj, heartbeat_id)
        return
    with obj.reading() as conn:
        rows = [] if conn is None else hb.history(conn, status=status, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    if as_json:
        click.echo(json.dumps({"heartbeats": [record(h) for h in rows], "more": more}, indent=2))
        return
    if conn is None:
        click.echo(_nothing_yet(obj))
        return
    if not rows:
        click.echo(f"no {status} heartbeats" if status else "no heartbeats sealed yet")
        return
    lines = table(
        ["seq", "id", "status", "tries", "period (UTC)", "settled (UTC)"],
        [
            [
                str(h.sequence),
                short_id(h.id),
                h.status,
                str(h.attempts),
                period(h.period_start, h.period_end),
                _settled(h),
            ]
            for h in rows
        ],
        right={0, 3},
        flex=4,
    )
    out = [lines[0]]
    indent = " " * lines[0].index("id  ")  # errors go under the id column
    for h, line in zip(rows, lines[1:], strict=True):
        out.append(line)
        if h.last_error:
            out.append(indent + clip(f"last error: {h.last_error}", WIDTH - len(indent)))
    click.echo("\n".join(out))
    if more:
        click.echo(f"(the newest {plural(limit, 'heartbeat')}; --limit shows more)")


def _print_payload(obj: CliContext, prefix: str) -> None:
    with obj.reading() as conn:
        if conn is None:
            raise click.ClickException(f"no heartbeat {prefix}: {_nothing_yet(obj)}")
        ids = hb.ids_starting_with(conn, prefix) if prefix else []
        if not ids:
            raise click.ClickException(
                f"no heartbeat with id {prefix!r} in {obj.db_path}; `outbox heartbeats` lists them"
            )
        if len(ids) > 1:
            raise click.ClickException(
                f"{prefix!r} starts more than one heartbeat id ({', '.join(ids)}); give more of it"
            )
        found = hb.get(conn, ids[0])
    assert found is not None  # read in the same connection just above
    click.echo(found.payload, nl=False)  # bytes go to the binary stream untouched
