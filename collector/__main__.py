"""``outbox-collector`` (also ``python -m collector``): run the reference receiving service.

A thin shell. Without a command it serves: open the storage (creating or upgrading
its schema), bind the socket, say where everything is, serve until Ctrl-C / SIGTERM.
The commands are the operator's (they open the database directly, no secret needed):

* ``import FILE…``: ingest heartbeats exported by offline sites, print their receipts;
* ``instances [ID]``: what is stored per instance (never shown publicly);
* ``forget ID``: delete an instance and subtract its counts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from starlette.types import ASGIApp

from collector import offline
from collector.app import create_app
from collector.errors import CollectorError
from collector.insights import DEFAULT_MIN_INSTANCES
from collector.server import DEFAULT_GUARDS, Guards, base_url, bind, make_server
from collector.storage import Storage
from collector.validate import Limits
from outbox.contract import iso_utc

F = TypeVar("F", bound=Callable[..., Any])
#: Bodies of the last this many days are kept by ``fold`` (the rest become day rows).
DEFAULT_FOLD_DAYS = 35
DB_HELP = "SQLite file path (created if missing), or postgresql://USER:PASSWORD@HOST:PORT/DB."


def db_option(default: str | None = "collector.db") -> Callable[[F], F]:
    return click.option(
        "--db",
        "target",
        default=default,
        show_default=default is not None,
        envvar="HELIOS_COLLECTOR_DB",
        metavar="PATH|URL",
        help=DB_HELP,
    )


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@db_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--max-body",
    default=Limits.max_body,
    show_default=True,
    type=click.IntRange(1024),
    metavar="BYTES",
    help="Largest heartbeat body accepted; larger ones get 413.",
)
@click.option(
    "--min-instances",
    default=DEFAULT_MIN_INSTANCES,
    show_default=True,
    type=click.IntRange(1),
    metavar="K",
    help="Publish a name or version only once K distinct instances reported it.",
)
@click.option(
    "--header-timeout",
    default=DEFAULT_GUARDS.header_timeout,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    metavar="SECONDS",
    help="Close a connection whose request headers are not complete in time.",
)
@click.option(
    "--body-timeout",
    default=DEFAULT_GUARDS.body_timeout,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    metavar="SECONDS",
    help="Answer 408 and close when a request body is not complete in time.",
)
@click.option(
    "--max-connections",
    default=DEFAULT_GUARDS.max_connections,
    show_default=True,
    type=click.IntRange(1, 100_000),
    metavar="N",
    help="Open connections at most; a new one past it gets 503 and is closed.",
)
@click.option(
    "--writers",
    type=click.IntRange(1, 64),
    default=None,
    help="Concurrent write transactions [default: 1 on SQLite, 2 on PostgreSQL].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Collector processes sharing the listening socket (each with its own writers).",
)
@click.option(
    "--sqlite-sync",
    type=click.Choice(["FULL", "NORMAL"]),
    default="FULL",
    show_default=True,
    help="SQLite durability: FULL survives a power cut; NORMAL only a crash.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One line per request (method, path, status, time; never the client address).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.pass_context
def main(
    ctx: click.Context,
    target: str,
    host: str,
    port: int,
    max_body: int,
    min_instances: int,
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    writers: int | None,
    workers: int,
    sqlite_sync: str,
    access_log: bool,
    log_level: str,
) -> None:
    """Receive Helios telemetry heartbeats and serve the public insights dashboard.

    Without a command it serves; the commands below are the operator's and work on
    the database directly.
    """
    ctx.obj = target
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sync: Literal["FULL", "NORMAL"] = "FULL" if sqlite_sync == "FULL" else "NORMAL"

    def build() -> tuple[Storage, ASGIApp]:
        try:
            storage = Storage(target, synchronous=sync)
            app = create_app(
                storage,
                limits=Limits(max_body=max_body),
                writers=writers,
                access_log_enabled=access_log,
                min_instances=min_instances,
            )
        except CollectorError as e:
            raise click.ClickException(str(e)) from e
        return storage, app

    # The schema is created (or upgraded) here, before any worker starts.
    storage, app = build()
    try:
        sock = bind(host, port)
    except OSError as e:
        storage.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port"
        ) from e
    url = base_url(sock)
    click.echo(f"outbox-collector: storing in {storage.display_url}")
    click.echo(f"  heartbeats  POST {url}/api/instances/heartbeat")
    click.echo(f"  dashboard   {url}/insights")
    click.echo(f"  JSON        {url}/api/insights   (API description: {url}/openapi.json)")
    if workers > 1:
        click.echo(f"  {workers} worker processes share the socket")
    click.echo("Client addresses are never stored or logged. Press Ctrl-C to stop.", nl=True)
    sys.stdout.flush()
    guards = Guards(header_timeout, body_timeout, max_connections)
    if workers > 1:
        storage.close()  # nothing opened here may cross a fork
        code = supervise(workers, lambda: serve(sock, *build(), log_level, guards))
        if code:
            raise SystemExit(code)
        return
    serve(sock, storage, app, log_level, guards)


def serve(
    sock: socket.socket, storage: Storage, app: ASGIApp, log_level: str, guards: Guards
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM / Ctrl-C."""
    server = make_server(app, log_level=log_level, guards=guards)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        storage.close()


def supervise(workers: int, work: Callable[[], None]) -> int:
    """Fork ``workers`` processes running ``work`` (each opens its own database
    connections) and wait for them.

    SIGTERM / SIGINT are passed on to them; once they have finished, the supervisor ends
    by the same signal (as a single ``uvicorn`` process does). A worker that ends on its
    own takes the others down with it (the address must not half-serve): the exit
    status is then its own, at least 1.
    """
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: its own storage, app and event loop
            code = 0
            try:
                work()
            except BaseException:  # noqa: B036 - reported, then the worker's exit status
                logging.getLogger(__name__).exception("a collector worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children:
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    while children:
        try:
            pid, raw = os.wait()
        except ChildProcessError:  # pragma: no cover - nothing left to wait for
            break
        if pid not in children:
            continue
        children.remove(pid)
        if not received:  # ended on its own: stop the others
            code = os.waitstatus_to_exitcode(raw)
            status = code if code > 0 else 1
            stop(signal.SIGTERM, None)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if received and not status:
        os.kill(os.getpid(), received[0])  # end as the signal says, like uvicorn
    return status


@contextmanager
def opened(ctx: click.Context, target: str | None) -> Iterator[Storage]:
    """The database of ``--db`` (the command's, else the group's), schema up to date."""
    try:
        storage = Storage(target or str(ctx.obj))
        try:
            storage.migrate(now=int(time.time()))
            yield storage
        finally:
            storage.close()
    except CollectorError as e:
        raise click.ClickException(str(e)) from e


@main.command("import")
@db_option(None)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each receipt to DIR/<heartbeat id>.receipt.json.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def import_files(
    ctx: click.Context, target: str | None, output_dir: Path | None, files: tuple[Path, ...]
) -> None:
    """Ingest heartbeats exported by offline sites (`outbox export`), one receipt each.

    Each file gets the endpoint's validation, credential check (the secret is in the
    file) and idempotency: importing a file twice counts it once. One receipt (JSON)
    per line on stdout; a file that is refused gets one line on stderr saying why,
    and the exit status is 1. Hand each receipt back to its site for `outbox receipt`.

    Example:

    \b
        outbox-collector import --db collector.db heartbeat-*.json -o receipts/
    """
    failed = 0
    with opened(ctx, target) as storage:
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as e:
                click.echo(f"{path}: cannot read it: {e.strerror or e}", err=True)
                failed += 1
                continue
            try:
                hb = offline.read_export(data)
                now = int(time.time())
                [outcome] = storage.ingest([hb], now=now)
            except CollectorError as e:
                click.echo(f"{path}: refused: {e}", err=True)
                failed += 1
                continue
            if outcome.status == "unauthorized":
                click.echo(
                    f"{path}: refused: instance {hb.instance_id} is registered with another "
                    "secret; nothing was stored",
                    err=True,
                )
                failed += 1
                continue
            if outcome.status == "conflict":
                click.echo(
                    f"{path}: refused: heartbeat {hb.heartbeat_id} was stored with a different "
                    "body; nothing was changed",
                    err=True,
                )
                failed += 1
                continue
            receipt = offline.receipt(hb, outcome, now=now).to_bytes()
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                (output_dir / f"{hb.heartbeat_id}.receipt.json").write_bytes(receipt)
            click.echo(receipt.decode("ascii"), nl=False)
    if failed:
        ctx.exit(1)


@main.command("instances")
@db_option(None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("instance_id", required=False)
@click.pass_context
def list_instances(
    ctx: click.Context, target: str | None, as_json: bool, instance_id: str | None
) -> None:
    """List the instances (or one, with its gaps, totals and names): the operator's view.

    Per-instance data is never on the public pages; this reads it from the database.

    Example:

    \b
        outbox-collector instances --db collector.db
    """
    with opened(ctx, target) as storage:
        if instance_id is None:
            rows = [asdict(info) for info in storage.instances()]
            for row in rows:
                del row["gaps"], row["totals"]
            if as_json:
                click.echo(json.dumps(rows, indent=2))
                return
            click.echo(
                f"{'instance':36}  {'last seen':20}  {'version':10} {'hb':>6} {'miss':>5}  key"
            )
            for r in rows:
                click.echo(
                    f"{r['instance_id']:36}  {iso_utc(r['last_seen']):20}  "
                    f"{str(r['version'])[:10]:10} {r['heartbeats']:>6} {r['missing']:>5}  "
                    f"{'bound' if r['credential'] else 'none'}"
                )
            click.echo(f"{len(rows)} instances")
            return
        info = storage.instance(instance_id.lower(), credential=None)
        if info is None:
            raise click.ClickException(f"no heartbeat from instance {instance_id} is stored")
        names = [
            {"kind": k, "name": n, "first_day": f, "last_day": la}
            for k, n, f, la in storage.names_of(info.instance_id)
        ]
    doc = {**asdict(info), "names": names}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key in ("instance_id", "edition", "version", "heartbeats", "last_sequence", "missing"):
        click.echo(f"{key:14} {doc[key]}")
    click.echo(f"{'first_seen':14} {iso_utc(info.first_seen)}")
    click.echo(f"{'last_seen':14} {iso_utc(info.last_seen)}")
    click.echo(f"{'secret':14} {'bound' if info.credential else 'none yet'}")
    click.echo(f"{'gaps':14} {info.gaps or 'none'}")
    click.echo(f"{'totals':14} {info.totals}")
    for n in names:
        click.echo(f"  {n['kind']:8} {n['name']:40} {n['first_day']} .. {n['last_day']}")


@main.command("forget")
@db_option(None)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("instance_id")
@click.pass_context
def forget_instance(ctx: click.Context, target: str | None, yes: bool, instance_id: str) -> None:
    """Delete an instance's heartbeats and subtract exactly its counts (no secret needed).

    Example:

    \b
        outbox-collector forget --db collector.db --yes 5d0c0000-0000-4000-8000-000000000001
    """
    if not yes and not click.confirm(f"Delete every heartbeat of instance {instance_id}?"):
        click.echo("aborted: nothing was deleted", err=True)
        ctx.exit(1)
    with opened(ctx, target) as storage:
        removed = storage.forget(instance_id.lower(), credential=None)
    if removed is None:
        raise click.ClickException(f"no heartbeat from instance {instance_id} is stored")
    click.echo(
        f"forgot instance {removed.instance_id}: {removed.heartbeats} heartbeats, "
        f"{removed.counts} counts subtracted"
    )


@main.command("fold")
@db_option(None)
@click.option(
    "--days",
    type=click.IntRange(1),
    default=DEFAULT_FOLD_DAYS,
    show_default=True,
    help="Keep the bodies received in the last DAYS days; fold the older ones.",
)
@click.pass_context
def fold_bodies(ctx: click.Context, target: str | None, days: int) -> None:
    """Fold the bodies of heartbeats older than DAYS into per-instance day rows.

    The retention rule for bodies: what each instance counted per day is kept (so
    forget and the instance's totals stay exact), the bodies themselves are emptied.
    Their ids and hashes stay, so a late resend is still a duplicate. Run it daily
    (cron, a systemd timer); each chunk of 500 heartbeats is one short transaction.

    Example:

    \b
        outbox-collector fold --db collector.db --days 35
    """
    with opened(ctx, target) as storage:
        try:
            done = storage.fold(before=int(time.time()) - days * 86_400)
        except CollectorError as e:
            raise click.ClickException(str(e)) from e
    click.echo(
        f"folded {done.heartbeats} heartbeats of {done.instances} instances into "
        f"{done.day_rows} day rows; bodies of the last {days} days are kept"
    )


if __name__ == "__main__":
    main()
