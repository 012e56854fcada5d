"""``outbox-worker`` / ``python -m worker``: the long-running sender.

Exit codes: 0 done (``--once``: nothing left pending; the loop: stopped by
SIGTERM/SIGINT), 1 ``--once`` left a heartbeat pending (it will be retried), or the
outbox stayed locked, 2 a usage or configuration error (a bad option or variable,
an unusable outbox, another worker holding this outbox).

:func:`build` and :func:`main` take the clock, transport and step hook from Python,
so tests (and the crash-proof wrapper that SIGKILLs the process at a chosen step)
run the real command line with their own parts.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx

from outbox import maintenance
from outbox.config import EDITION, ENABLED, ENDPOINT, VERSION, Config
from outbox.errors import OutboxBusy, OutboxError, SettingsError, translate
from worker.loop import Summary, Worker
from worker.options import Options
from worker.pacing import Hook
from worker.retry import RetryPolicy
from worker.sender import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from worker.transport import proxy_for

log = logging.getLogger("worker")


@dataclass(frozen=True)
class Parts:
    """What a caller of :func:`main` may inject (production defaults otherwise)."""

    hook: Hook | None = None
    clock: Callable[[], float] = time.time
    transport: httpx.BaseTransport | None = None
    environ: dict[str, str] | None = None


def build(config: Config, options: Options, *, parts: Parts | None = None) -> Worker:
    """The worker for ``config`` and ``options`` with the injected ``parts``."""
    p = parts or Parts()
    if p.hook is None:
        return Worker(config, options, clock=p.clock, transport=p.transport)
    return Worker(config, options, clock=p.clock, transport=p.transport, hook=p.hook)


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO: one line per attempt, not per backoff window.
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def _install_signals(worker: Worker) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if worker.stop_event.is_set():  # asked twice: stop now
            raise KeyboardInterrupt
        log.info("%s: finishing the current step, then exiting", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _config(environ: dict[str, str], db: Path | None, endpoint: str | None) -> Config:
    """The environment, with ``--db`` and ``--endpoint``; a value the worker cannot use
    stops it (exit 2) with the same sentence ``outbox status`` shows."""
    config = Config.from_env(environ, db_path=db, endpoint=endpoint)
    config.require(ENDPOINT, "--endpoint", EDITION, ENABLED, VERSION)
    proxy_for(config.endpoint, environ)  # an unusable proxy is said now, not at the first POST
    return config


def _report_once(summary: Summary) -> int:
    """Print what ``--once`` did (stdout) and choose the exit code."""
    if summary.held_back is not None:
        click.echo(f"not sent, not deleted: {summary.held_back}", err=True)
        return 1
    if summary.mode == "off":
        gone = ""
        if summary.discarded_events or summary.discarded_heartbeats:
            gone = (
                f"; discarded {summary.discarded_events} unsent counts and "
                f"{summary.discarded_heartbeats} unsent heartbeat(s)"
            )
        click.echo(f"telemetry is off: nothing sent, no connection opened{gone}")
        return 0
    for d in summary.deliveries:
        if d.result == "sent":
            receipt = (d.receipt or {}).get("status", "no receipt")
            click.echo(f"delivered heartbeat {d.heartbeat_id} ({receipt}, {d.attempts} attempt(s))")
            if d.hash_mismatch:
                click.echo(f"warning: {d.error}", err=True)
        elif d.result == "rejected":
            click.echo(f"heartbeat {d.heartbeat_id} rejected by the receiver: {d.error}", err=True)
    if summary.mode == "local":
        what = f"sealed heartbeat {summary.sealed}" if summary.sealed else "nothing new to seal"
        click.echo(f"local mode: {what}; kept here, never sent")
        return 0
    if summary.pending is None:
        if not summary.deliveries:
            click.echo("nothing to send")
        return 0
    if summary.retired:
        click.echo(
            f"heartbeat {summary.pending} not sent: the endpoint is retired (410 Gone); "
            "set HELIOS_TELEMETRY_ENDPOINT (or --endpoint) to a new one",
            err=True,
        )
    else:
        last = summary.deliveries[-1].error if summary.deliveries else "not tried"
        click.echo(
            f"heartbeat {summary.pending} still pending ({last}); it will be retried", err=True
        )
    return 1


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="Seal the telemetry outbox into heartbeats and deliver each one exactly once. "
    "Runs until SIGTERM/SIGINT, or once with --once.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The outbox file. [default: HELIOS_TELEMETRY_DB, else ~/.local/share/helios/telemetry.db]",
)
@click.option(
    "--endpoint",
    metavar="URL",
    help="Where heartbeats are POSTed (https only, except loopback). "
    "[default: HELIOS_TELEMETRY_ENDPOINT, else the Helios project's endpoint]",
)
@click.option(
    "--once",
    is_flag=True,
    help="Seal now (even if not due), deliver everything pending, and exit: "
    "0 when nothing is left pending, 1 when something remains.",
)
@click.option(
    "--retry-attempts",
    type=click.IntRange(1, 100),
    default=RetryPolicy.attempts,
    show_default=True,
    metavar="N",
    help="Attempts per delivery cycle before the heartbeat waits for the next cycle.",
)
@click.option(
    "--retry-max-wait",
    type=click.FloatRange(0, 3600),
    default=RetryPolicy.max_wait,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait between two attempts (exponential backoff with full jitter up to this).",
)
@click.option(
    "--wait",
    "wait_for_lease",
    is_flag=True,
    help="If another worker holds this outbox, wait for it instead of exiting with status 2.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(1, 3650),
    default=maintenance.DEFAULT_RETENTION_SECONDS // 86400,
    show_default=True,
    metavar="DAYS",
    help="Keep sent and rejected heartbeats this long (for `outbox heartbeats`).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0.1, 300),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="TCP/TLS connect timeout.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0.1, 600),
    default=DEFAULT_READ_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Time to wait for the receiver's answer.",
)
@click.option(
    "--attempt-timeout",
    type=click.FloatRange(1, 3600),
    default=DEFAULT_ATTEMPT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Longest time one attempt may take in all (connect, send, answer), however slowly "
    "the receiver answers.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging to stderr; payloads are never logged (ids, sizes and statuses only).",
)
@click.version_option(package_name="helios-telemetry", prog_name="outbox-worker")
@click.pass_context
def cli(ctx: click.Context, /, **opts: Any) -> int:
    parts: Parts = ctx.obj or Parts()
    _configure_logging(opts["log_level"])
    try:
        config = _config(
            dict(os.environ if parts.environ is None else parts.environ),
            opts["db"],
            opts["endpoint"],
        )
    except SettingsError as e:
        click.echo(f"outbox-worker: {e}", err=True)
        return 2
    options = Options(
        retry=RetryPolicy(attempts=opts["retry_attempts"], max_wait=opts["retry_max_wait"]),
        connect_timeout=opts["connect_timeout"],
        read_timeout=opts["read_timeout"],
        attempt_timeout=opts["attempt_timeout"],
        retention=opts["retention_days"] * 86400,
        wait_for_lease=opts["wait_for_lease"],
    )
    worker = build(config, options, parts=parts)
    _install_signals(worker)
    try:
        worker.open()
        if opts["once"]:
            return _report_once(worker.tick(parts.clock(), force=True))
        return worker.run()
    except (OutboxError, sqlite3.Error) as e:
        # Busy past the timeout: 1 (try again); an outbox that cannot be used, another
        # worker holding the lease, a configuration problem: 2. A --once cycle's SQLite
        # error is said as the loop says it (``translate``), never as a traceback.
        err = translate(e, config.db_path) if isinstance(e, sqlite3.Error) else e
        click.echo(f"outbox-worker: {err}", err=True)
        return 1 if isinstance(err, OutboxBusy) else 2
    finally:
        worker.close()


def main(argv: Sequence[str] | None = None, *, parts: Parts | None = None) -> int:
    """Run the command line; returns the exit code.

    :param argv: the arguments (default ``sys.argv[1:]``).
    :param parts: injected clock, transport and step hook (tests, crash wrappers).
    """
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="outbox-worker",
            standalone_mode=False,
            obj=parts,
        )
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("outbox-worker: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    return int(rv or 0)


if __name__ == "__main__":
    sys.exit(main())
