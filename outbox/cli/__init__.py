"""The ``outbox`` command: see, preview, purge and switch telemetry.

Each command opens the outbox, makes library calls and formats the result;
errors become one line at the edge (:class:`outbox.cli.context.OutboxGroup`).
Exit codes: 0 ok, 1 the operation failed, 2 a usage or configuration error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from outbox.cli.change import disable, enable, purge, track
from outbox.cli.context import CliContext, OutboxGroup
from outbox.cli.forget import forget
from outbox.cli.offline import export_command, receipt_command
from outbox.cli.status import status
from outbox.cli.views import heartbeats_command, preview, show
from outbox.config import default_db_path

__all__ = ["CliContext", "cli", "main"]


def _default_db() -> str:
    return str(default_db_path(os.environ))


@click.group(cls=OutboxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    type=click.Path(readable=False, path_type=Path),  # checked when opened, with the fix
    envvar="HELIOS_TELEMETRY_DB",
    default=_default_db,
    show_envvar=True,
    show_default="$XDG_DATA_HOME/helios/telemetry.db, else ~/.local/share/helios/telemetry.db",
    help="The outbox file.",
)
@click.version_option(package_name="helios-telemetry", prog_name="outbox")
@click.pass_context
def cli(ctx: click.Context, db_path: Path) -> None:
    """Helios telemetry: see what is collected, what will be sent, and switch it.

    Telemetry is off until an administrator turns it on. Commands that only
    read (status, show, preview, heartbeats) never create the outbox.

    Example:

    \b
        outbox status
    """
    # The commands report problems themselves, in one line: keep the library's
    # warnings (a failed track call logs one) from reaching stderr a second time.
    library_log = logging.getLogger("outbox")
    if not any(isinstance(h, logging.NullHandler) for h in library_log.handlers):
        library_log.addHandler(logging.NullHandler())
    obj = ctx.ensure_object(CliContext)
    obj.db_path = db_path.expanduser()


for command in (
    status,
    show,
    preview,
    heartbeats_command,
    purge,
    enable,
    disable,
    track,
    forget,
    export_command,
    receipt_command,
):
    cli.add_command(command)


def main() -> None:
    """The console script ``outbox``."""
    cli(prog_name="outbox")
