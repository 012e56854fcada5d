"""The command line's shell: its context, opening the outbox, and the error edge.

Every command gets a :class:`CliContext` (``click.pass_obj``): the outbox path
from ``--db`` and the injected clock, busy timeout and HTTP transport (tests
pass their own through ``CliRunner.invoke(obj=...)``). Library errors become
one line on stderr here, in :meth:`OutboxGroup.invoke`, and nowhere else::

    SettingsError, wrong --db path   -> exit 2 (a usage or configuration error)
    OutboxError, sqlite3.Error, OSError -> exit 1 (the operation failed)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from outbox import db
from outbox.config import Config
from outbox.errors import OutboxError, OutboxMissing, SettingsError, translate

if TYPE_CHECKING:  # httpx is imported by `forget` only: the other commands start faster
    import httpx

#: Seconds a command waits for the worker or the app to release the write lock.
CLI_BUSY_TIMEOUT = 5.0


class ConfigError(click.ClickException):
    """A setting or a path the user gave cannot be used: exit 2, like a usage error."""

    exit_code = 2


@dataclass
class CliContext:
    """What every command receives; tests build one with a fake clock."""

    clock: Callable[[], float] = time.time
    busy_timeout: float = CLI_BUSY_TIMEOUT
    #: The transport ``forget`` sends through (default: the network).
    transport: httpx.BaseTransport | None = None
    db_path: Path = field(default_factory=Path)

    def now(self) -> int:
        return int(self.clock())

    def config(self, *, endpoint: str | None = None) -> Config:
        """The environment as the library and the worker read it (``os.environ``, which
        ``CliRunner.invoke(env=...)`` sets), with ``--db`` and ``--endpoint`` applied."""
        return Config.from_env(os.environ, db_path=self.db_path, endpoint=endpoint)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or ``None`` when there is no outbox yet (nothing is created)."""
        check_path(self.db_path)
        if self.db_path.exists() and not os.access(self.db_path, os.R_OK):
            raise OutboxError(
                f"{self.db_path}: this user cannot read the outbox (permission denied); "
                "run the command as the user that runs Helios, or with sudo -u that user"
            )
        try:
            conn = db.connect(
                self.db_path, busy_timeout=self.busy_timeout, create=False, readonly=True
            )
        except OutboxMissing:
            conn = None
        if conn is None:
            yield None
            return
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A read-write connection; creates the outbox (and its folder) when missing."""
        check_path(self.db_path)
        conn = db.connect(self.db_path, busy_timeout=self.busy_timeout)
        try:
            yield conn
        finally:
            conn.close()


def check_path(path: Path) -> None:
    """Refuse a ``--db`` that cannot be an outbox file before SQLite says something vaguer."""
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder, not an outbox file; point --db (or HELIOS_TELEMETRY_DB) "
            f"at a file, for example {path / 'telemetry.db'}"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{path}: {parent} is a file, not a folder; point --db (or "
                    "HELIOS_TELEMETRY_DB) at a path inside a folder"
                )
            break


class OutboxGroup(click.Group):
    """The ``outbox`` group: turns library errors into one clear line at the edge."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as e:
            raise ConfigError(str(e)) from e
        except OutboxError as e:
            raise click.ClickException(str(e)) from e
        except sqlite3.Error as e:
            obj = ctx.find_object(CliContext)
            where = obj.db_path if obj is not None else "outbox"
            raise click.ClickException(str(translate(e, where))) from e
        except OSError as e:
            raise click.ClickException(f"{e.filename or 'outbox'}: {e.strerror or e}") from e
