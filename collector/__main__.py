"""``outbox-collector`` (also ``python -m collector``): run the reference receiving service.

A thin shell: open the storage (creating or upgrading its schema), bind the
socket, say where everything is, serve until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import logging
import sys

import click

from collector.app import create_app
from collector.errors import CollectorError
from collector.server import base_url, bind, make_server
from collector.storage import Storage
from collector.validate import Limits


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "target",
    default="collector.db",
    show_default=True,
    envvar="HELIOS_COLLECTOR_DB",
    metavar="PATH|URL",
    help="SQLite file path (created if missing), or postgresql://USER:PASSWORD@HOST:PORT/DB.",
)
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
    "--writers",
    type=click.IntRange(1, 64),
    default=None,
    help="Concurrent write transactions [default: 1 on SQLite, 2 on PostgreSQL].",
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
def main(
    target: str,
    host: str,
    port: int,
    max_body: int,
    writers: int | None,
    sqlite_sync: str,
    access_log: bool,
    log_level: str,
) -> None:
    """Receive Helios telemetry heartbeats and serve the public insights dashboard."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        storage = Storage(target, synchronous="FULL" if sqlite_sync == "FULL" else "NORMAL")
        app = create_app(
            storage,
            limits=Limits(max_body=max_body),
            writers=writers,
            access_log_enabled=access_log,
        )
    except CollectorError as e:
        raise click.ClickException(str(e)) from e
    try:
        sock = bind(host, port)
    except OSError as e:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port"
        ) from e
    url = base_url(sock)
    click.echo(f"outbox-collector: storing in {storage.display_url}")
    click.echo(f"  heartbeats  POST {url}/api/instances/heartbeat")
    click.echo(f"  dashboard   {url}/insights")
    click.echo(f"  JSON        {url}/api/insights   (API description: {url}/openapi.json)")
    click.echo("Client addresses are never stored or logged. Press Ctrl-C to stop.", nl=True)
    sys.stdout.flush()
    server = make_server(app, log_level=log_level)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        storage.close()


if __name__ == "__main__":
    main()
