"""Exceptions of the collector package.

Every error the collector raises on purpose derives from :class:`CollectorError`;
the web layer turns each into one HTTP answer::

    CollectorError
    ├── PayloadError         the request can never be accepted: 400 / 413 / 415 / 422
    ├── Unauthorized         no instance secret, or not the one bound to the instance: 401
    └── StorageError         the database failed: 500
        ├── StorageBusy      locked or overloaded for now: 503 with Retry-After
        └── SchemaTooNew     the database was written by a newer collector

``sqlalchemy`` errors are translated into these at the storage boundary
(:mod:`collector.storage`); nothing above it sees a driver exception.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of everything the collector raises on purpose."""


class PayloadError(CollectorError):
    """A request body or header the collector will never accept.

    :param status: the HTTP status to answer with (400, 413, 415 or 422).
    :param message: what is wrong, for the sender's log.
    :param field: the dotted path of the offending field, when there is one
        (``days.2026-11-25.api_usage.users.list``).
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, str]:
        out = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class Unauthorized(CollectorError):
    """The request does not carry the secret of the instance it is about.

    :param message: what is wrong and how to fix it (never the stored hash).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageError(CollectorError):
    """The database could not be used."""


class StorageBusy(StorageError):
    """The database is locked or the collector is overloaded: try again shortly."""


class SchemaTooNew(StorageError):
    """The database carries a schema version this collector does not know."""
