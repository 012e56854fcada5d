"""Commands that write: ``purge``, ``enable``, ``disable``, ``track``."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from outbox import consent, maintenance, store
from outbox.cli.context import CliContext
from outbox.cli.fmt import MODES, human_bytes, parse_duration, plural
from outbox.client import Telemetry
from outbox.config import Decision
from outbox.contract import KINDS, MAX_COUNT, MAX_NAME_LENGTH, is_valid_name
from outbox.maintenance import Purged

NAME_RULE = (
    "a name is lowercase segments of letters, digits and _ joined by '.', each starting "
    f"with a letter, at most {MAX_NAME_LENGTH} characters in all "
    "(for example users.list, sync, bulk_edit)"
)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--older-than 30d`` → seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def _removal(p: Purged, *, would: bool) -> str:
    verb = "would delete" if would else "deleted"
    text = (
        f"{verb} {plural(p.heartbeats, 'heartbeat')} of history (sent, rejected or local) "
        f"and {plural(p.event_rows, 'event row')}"
    )
    if p.unsent.events or p.unsent.heartbeats:
        verb = "would discard" if would else "discarded"
        text += (
            f"; {verb} unsent data: {plural(p.unsent.events, 'event')} and "
            f"{plural(p.unsent.heartbeats, 'heartbeat')} waiting for delivery "
            "(never to be sent)"
        )
    return text


def _empty(p: Purged) -> bool:
    return not (p.heartbeats or p.event_rows or p.unsent.events or p.unsent.heartbeats)


@click.command()
@click.option(
    "--sent",
    "scope",
    flag_value="sent",
    default=True,
    help="Delete sent history: sent, rejected and local heartbeats (the default).",
)
@click.option("--all", "scope", flag_value="all", help="Also delete unsent data.")
@click.option(
    "--older-than",
    callback=_duration,
    metavar="AGE",
    help="Only heartbeats settled longer ago than AGE: 30d, 12h, 2w (units s m h d w).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, scope: str, older_than: int | None, dry_run: bool, yes: bool) -> None:
    """Delete sent history (and, with --all, unsent data) and give the space back.

    Event rows already counted in a settled heartbeat always go: the heartbeat
    holds their counts. Asks before deleting unless --yes.

    Example:

    \b
        outbox purge --older-than 30d --dry-run
    """
    obj: CliContext = ctx.obj
    everything = scope == "all"
    now = obj.now()
    with obj.reading() as conn:
        if conn is None:
            click.echo(f"nothing to purge: no outbox at {obj.db_path} yet")
            return
        plan = maintenance.purge(conn, now=now, older_than=older_than, dry_run=True)
        if everything:
            plan = dataclasses.replace(
                plan, unsent=maintenance.unsent(conn), event_rows=maintenance.event_rows(conn)
            )
    if _empty(plan):
        click.echo("nothing to purge")
        return
    if dry_run:
        click.echo(_removal(plan, would=True))
        click.echo("(dry run: nothing deleted)")
        return
    if not yes:
        question = f"{_removal(plan, would=True)} from {obj.db_path}. Go ahead?"
        try:
            agreed = click.confirm(question[0].upper() + question[1:], default=False)
        except click.Abort:
            agreed = False
        if not agreed:
            click.echo("aborted: nothing deleted", err=True)
            ctx.exit(1)
    before = maintenance.file_sizes(obj.db_path)
    with obj.writing() as conn:
        erased = consent.erase_unsent(conn) if everything else None
        done = maintenance.purge(conn, now=obj.now(), older_than=older_than)
        if erased is not None:
            done = dataclasses.replace(
                done, unsent=erased.discarded, event_rows=done.event_rows + erased.rows
            )
        maintenance.checkpoint(conn, "TRUNCATE")
    after = maintenance.file_sizes(obj.db_path)
    click.echo(_removal(done, would=False))
    click.echo(
        f"reclaimed {human_bytes(done.bytes_reclaimed)} ({done.bytes_reclaimed} bytes); "
        f"the outbox is now {human_bytes(after.total)} (was {human_bytes(before.total)})"
    )


def _effect(before: Decision, after: Decision, enabled: bool) -> list[str]:
    """What the switch did to the effective state, in words."""
    lines = [f"telemetry is {MODES[after.mode]}"]
    if after.locked:
        lines.append(
            f"the environment locks it off ({after.reason}): this command changes nothing "
            "effective; the stored choice applies once that is lifted"
        )
    elif enabled and after.mode == "local":
        lines.append(
            "HELIOS_TELEMETRY_ENABLED=local keeps it local: counts are shown here, never sent"
        )
    elif before.mode == after.mode:
        lines.append(f"(it was already {after.mode})")
    return lines


def _switch(obj: CliContext, enabled: bool) -> None:
    cfg = obj.config()
    with obj.writing() as conn:
        before = cfg.decision(store.org_enabled(conn))
        switched = consent.switch(conn, enabled, now=obj.now())
        after = cfg.decision(store.org_enabled(conn))
    click.echo(f"organisation setting: {'on' if enabled else 'off'} (stored in {obj.db_path})")
    for line in _effect(before, after, enabled):
        click.echo(line)
    if not enabled:
        discarded = switched.discarded
        if discarded.events or discarded.heartbeats:
            click.echo(
                f"deleted unsent data: {plural(discarded.events, 'event')} and "
                f"{plural(discarded.heartbeats, 'heartbeat')} waiting for delivery; "
                "nothing collected before now will be sent"
            )
        else:
            click.echo("there was no unsent data to delete")
        if not switched.wiped:
            click.echo(
                "another process is reading the outbox, so its -wal file still holds old "
                "pages; the worker empties it at its next cycle"
            )


@click.command()
@click.pass_obj
def enable(obj: CliContext) -> None:
    """Turn sharing on: store the organisation's choice "on" in the outbox.

    DO_NOT_TRACK or HELIOS_TELEMETRY_ENABLED=false still win (the choice is
    stored and applies once they are lifted); HELIOS_TELEMETRY_ENABLED=local
    keeps it local. Creates the outbox if needed.

    Example:

    \b
        outbox --db /var/lib/helios/telemetry.db enable
    """
    _switch(obj, True)


@click.command()
@click.pass_obj
def disable(obj: CliContext) -> None:
    """Turn sharing off and delete everything not yet sent.

    Stores the organisation's choice "off"; unsent counts and the heartbeat
    waiting for delivery are deleted, so nothing collected before is sent after.

    Example:

    \b
        outbox disable
    """
    _switch(obj, False)


def _valid_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_valid_name(value):
        raise click.BadParameter(f"{value!r} is not a valid name: {NAME_RULE}")
    return value


@click.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name", callback=_valid_name)
@click.option(
    "--count",
    type=click.IntRange(1, MAX_COUNT),
    default=1,
    show_default=True,
    help="How many to add at once.",
)
@click.pass_obj
def track(obj: CliContext, kind: Any, name: str, count: int) -> None:
    """Append one event to the outbox, as the app does (for scripts and testing).

    KIND is api, command or ui. Fails (exit 1) when telemetry is off, rather
    than doing nothing quietly.

    Example:

    \b
        outbox track command users.import --count 3
    """
    cfg = obj.config()
    org = None
    if not cfg.locked_off:
        with obj.reading() as conn:
            org = None if conn is None else store.org_enabled(conn)
    decision = cfg.decision(org)
    if not decision.collecting:
        hint = "" if decision.locked else "; `outbox enable` turns it on"
        raise click.ClickException(f"telemetry is off ({decision.reason}): nothing stored{hint}")
    t = Telemetry(
        db_path=obj.db_path, environ=os.environ, clock=obj.clock, busy_timeout=obj.busy_timeout
    )
    try:
        stored = t.track(kind, name, count)
    finally:
        t.close()
    if not stored:
        detail = t.last_error or "telemetry was switched off meanwhile"
        # An open failure is already a full sentence naming the file.
        detail = detail.removeprefix("OperationalError: ")
        if "locked" in detail and "try again" not in detail:
            detail += "; another process holds the outbox: try again in a moment"
        raise click.ClickException(f"not stored: {detail}")
    with obj.reading() as conn:
        assert conn is not None  # the event was just stored in it
        pending = {c.name: c.count for c in store.pending_counters(conn, kind)}
    click.echo(f"stored {kind} {name} (+{count}); {pending.get(name, 0)} pending for it now")
    if decision.mode == "local":
        click.echo("telemetry is local: it is kept here, never sent")
