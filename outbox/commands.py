"""Counting commands: the ``@tracked_command("sync")`` decorator.

Plain Python with no optional dependency, so that a CLI, a cron job or a worker
can count its commands without any web framework installed
(``from outbox.commands import tracked_command``; ``outbox.web`` re-exports it).

Command names follow a stricter convention than other names: ``noun`` or
``noun.verb`` — one or two lowercase segments (``sync``, ``users.import``). A
literal that breaks it fails when the module is imported, not when a user runs
the command. Every decorated name is kept in a registry, so that tests can
check the whole application at once (:func:`registered_commands`).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar, cast

from outbox.contract import is_valid_name
from outbox.errors import OutboxError

if TYPE_CHECKING:
    from outbox.client import Telemetry

P = ParamSpec("P")
R = TypeVar("R")

#: ``noun`` or ``noun.verb``: lowercase, each segment a letter then letters, digits or ``_``.
COMMAND_NAME_PATTERN: Final = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?"
_COMMAND_NAME = re.compile(COMMAND_NAME_PATTERN)

_registry: dict[str, set[str]] = {}


class CommandNameError(OutboxError, ValueError):
    """A command name breaks the ``noun`` / ``noun.verb`` convention."""


def is_command_name(name: object) -> bool:
    """True for ``sync`` or ``users.import``; False for anything else, including a
    name the general rules refuse (``users.com``, a hex id) that the track call
    would drop every time."""
    return type(name) is str and is_valid_name(name) and _COMMAND_NAME.fullmatch(name) is not None


def check_command_name(name: object) -> str:
    """Return ``name`` if it follows the convention.

    :raises CommandNameError: saying what the convention is.
    """
    if not is_command_name(name):
        raise CommandNameError(
            f"command name {name!r} breaks the convention: use 'noun' or 'noun.verb', "
            "lowercase letters, digits and _, each part starting with a letter "
            "(for example 'sync' or 'users.import')"
        )
    return cast(str, name)


def registered_commands() -> dict[str, tuple[str, ...]]:
    """Every name passed to :func:`tracked_command` so far, with the functions using it."""
    return {name: tuple(sorted(funcs)) for name, funcs in sorted(_registry.items())}


def _default_telemetry() -> Telemetry:
    import outbox

    return outbox.telemetry


def tracked_command(
    name: str, *, telemetry: Telemetry | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count one run of the command ``name`` each time the decorated function is called.

    Works on plain and ``async`` functions. The run is counted when the call
    starts, so a command that raises (or is cancelled, or never returns) is
    counted too, exactly once. Counting never raises into the command.

    :param name: ``noun`` or ``noun.verb``, e.g. ``"sync"`` or ``"users.import"``.
    :param telemetry: where to count (default: the :data:`outbox.telemetry` singleton,
        looked up at call time).
    :raises CommandNameError: at decoration time, when ``name`` breaks the convention.
    """
    check_command_name(name)

    def count() -> None:
        try:
            (telemetry or _default_telemetry()).track_command(name)
        except Exception:  # noqa: BLE001  # track calls never raise; never let one reach a command
            pass

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        _registry.setdefault(name, set()).add(f"{func.__module__}.{func.__qualname__}")
        if inspect.iscoroutinefunction(func):
            coro = cast(Callable[P, Awaitable[object]], func)

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> object:
                count()
                return await coro(*args, **kwargs)

            return cast(Callable[P, R], run_async)

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            count()
            return func(*args, **kwargs)

        return run

    return decorate
