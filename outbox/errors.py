"""Exceptions of the outbox package.

Track calls never raise: these are for the operations that the worker and the
command line call, which must fail clearly. Every message says what to do::

    OutboxError
    ├── SettingsError        a variable or option has a value we cannot use
    ├── OutboxMissing        no outbox file yet (nothing collected)
    └── StorageError         the outbox file cannot be used
        ├── OutboxBusy       another process holds the write lock too long
        ├── OutboxCorrupt    the file is not a readable outbox
        ├── OutboxReadOnly   the file or its folder cannot be written
        └── SchemaMismatch   written by a newer helios-telemetry

``sqlite3.Error`` is translated into these at the boundary (``outbox.db``).
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path


class OutboxError(Exception):
    """Base class of everything the outbox package raises on purpose."""


class SettingsError(OutboxError):
    """A setting (environment variable, option, argument) has an unusable value."""


class OutboxMissing(OutboxError):
    """The outbox file does not exist: telemetry has not collected anything yet."""


class StorageError(OutboxError):
    """The outbox file exists but cannot be used."""


class OutboxBusy(StorageError):
    """The outbox stayed locked by another process for longer than the busy timeout."""


class OutboxCorrupt(StorageError):
    """The file is not an SQLite database, or fails its integrity check."""


class OutboxReadOnly(StorageError):
    """The outbox (or the folder holding its journal) is not writable."""


class SchemaMismatch(StorageError):
    """The outbox was written by a newer version of helios-telemetry."""


#: SQLite's primary result codes that name what went wrong (``sqlite_errorcode & 0xFF``).
_BUSY, _LOCKED, _READONLY, _CANTOPEN, _PERM = 5, 6, 8, 14, 3
_CORRUPT, _NOTADB, _FULL = 11, 26, 13
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def translate(exc: sqlite3.Error | OSError, path: str | Path) -> StorageError:
    """Turn an ``sqlite3.Error`` (or an ``OSError`` met opening the file) into the
    matching :class:`StorageError`, with the fix. Classified by SQLite's result code
    (or the OS error number), never by the wording of the message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        code = {e: _FULL for e in _NO_SPACE} | {e: _READONLY for e in _NO_ACCESS}
        primary = code.get(exc.errno or 0, 0)
    else:
        primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if primary in (_BUSY, _LOCKED):
        return OutboxBusy(
            f"{path}: the outbox is locked by another process ({text}); "
            "try again in a moment, or stop the process holding it"
        )
    if primary in (_CORRUPT, _NOTADB):
        return OutboxCorrupt(
            f"{path}: the file is not a readable outbox ({text}); move it aside "
            f"(mv {path} {path}.corrupt) and a new one is created on the next write, "
            "or run outbox-worker, which does this for you"
        )
    if primary in (_READONLY, _CANTOPEN, _PERM):
        return OutboxReadOnly(
            f"{path}: the outbox cannot be opened for writing ({text}); check that the "
            "file and its folder are writable by this user, or point HELIOS_TELEMETRY_DB "
            "at a writable path"
        )
    if primary == _FULL:
        return StorageError(f"{path}: the disk is full ({text}); free some space")
    return StorageError(f"{path}: {text}")
