"""Which requests are counted, and the per-source tally that keeps "nothing counted" visible.

The rule (DESIGN.md section 4, docs/integration.md "What is counted"): a request is counted
once, after its response started, when

* its method is ``GET``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` (never
  ``HEAD`` or ``OPTIONS``: preflights and probes are not uses);
* a route matched (for a relay: the path is under the relay prefix);
* the route is not one of the telemetry's own and was not opted out;
* the status is 2xx (redirects, 4xx and 5xx are not uses);
* a name can be made from developer-written words only (a relay request that
  matches nothing declared is counted as dropped ``unknown_name``, with no text kept).

:func:`decide` is that rule as a pure function. Every middleware also keeps a
:class:`Tally` of what it saw, by :class:`Outcome`, which it writes to the outbox at
most once a minute (``outbox status`` shows it) and which raises one warning when a
middleware cannot be counting anything (a relay prefix that never matches, a route
middleware that never sees a matched route).

Pure: no framework, no I/O.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Final

from outbox.web.naming import VERBS, Vocabulary

#: Where relayed calls are served by default (the relay middlewares' ``prefix``).
DEFAULT_RELAY_PREFIX: Final = "/api/relay"


class Outcome(StrEnum):
    """What became of one request, as the tally and ``outbox status`` name it."""

    COUNTED = "counted"
    #: A relay request that matched nothing declared: counted as dropped ``unknown_name``.
    UNKNOWN_NAME = "unknown_name"
    #: Not counted: ``HEAD``, ``OPTIONS`` or another method without a verb.
    METHOD = "method"
    #: Not counted: no route matched (404, a trailing-slash redirect), or the path is not
    #: under the relay prefix.
    UNMATCHED = "unmatched"
    #: Not counted: answered 2xx, yet no matched route was visible to the middleware
    #: (it sits where it cannot see the router; see :func:`route_warning`).
    NO_ROUTE = "no_route"
    #: Not counted: one of the telemetry's own routes (settings, UI actions, page, help).
    OWN_ROUTE = "own_route"
    #: Not counted: the route opted out (``not_tracked``).
    OPTED_OUT = "opted_out"
    #: Not counted: the status was not 2xx (redirects, 4xx, 5xx), or no response started.
    STATUS = "status"
    #: Not counted: the route matched but its template has no word to make a name of.
    UNNAMED = "unnamed"
    #: Not counted: the app raised instead of answering.
    ERROR = "error"


#: A route's mark for the telemetry's own routes (never counted, tallied as ``own_route``).
OWN_ROUTE_MARK: Final = "helios_telemetry_own_route"


def decide(
    method: str,
    status: int,
    *,
    matched: bool,
    own: bool = False,
    mark: str | bool | None = None,
    name: Callable[[], str | None],
) -> tuple[Outcome, str | None]:
    """Whether to count one finished request, and under which name.

    :param status: the response status (0 when no response started).
    :param matched: a route matched (for a relay: the path is under its prefix).
    :param own: the route is one of the telemetry's own.
    :param mark: what the route says of itself: its own name, ``False`` (opted out)
        or None.
    :param name: makes the name from the template or vocabulary (called last, and
        only when everything else says count).
    :returns: ``(COUNTED, name)``, ``(UNKNOWN_NAME, None)`` or ``(reason, None)``.
    """
    if method not in VERBS:
        return Outcome.METHOD, None
    if not matched:
        return (Outcome.NO_ROUTE if 200 <= status < 300 else Outcome.UNMATCHED), None
    if own:
        return Outcome.OWN_ROUTE, None
    if mark is False:
        return Outcome.OPTED_OUT, None
    if not 200 <= status < 300:
        return Outcome.STATUS, None
    made = mark if isinstance(mark, str) else name()
    if made is None:
        return Outcome.UNNAMED, None
    return Outcome.COUNTED, made


# -- the tally -----------------------------------------------------------------------------

#: Requests a middleware sees before it checks that it can count at all.
DEFAULT_CHECK_AFTER: Final = 100


def route_warning(outcomes: Mapping[str, int], *, check_after: int) -> str | None:
    """The warning of a route middleware that never saw a matched route, or None.

    It can only see the route the router matched when it wraps the router (added
    with ``app.add_middleware``): outside an app that copies the request scope, or
    around an app that is no Starlette/FastAPI router, successful requests arrive
    with no route (:attr:`Outcome.NO_ROUTE`) and nothing is ever counted.
    """
    seen = sum(outcomes.values())
    if seen < check_after or not outcomes.get(Outcome.NO_ROUTE, 0):
        return None
    if any(outcomes.get(o, 0) for o in _ROUTE_SEEN):
        return None
    return (
        f"RouteTracking has seen {seen} requests and not one matched route, so it counts "
        "nothing: add it to the Starlette or FastAPI app that routes the requests "
        "(app.add_middleware(RouteTracking, telemetry=...)), not around another app"
    )


#: Outcomes that prove the middleware sees the router's matched route.
_ROUTE_SEEN: Final = (
    Outcome.COUNTED,
    Outcome.OWN_ROUTE,
    Outcome.OPTED_OUT,
    Outcome.STATUS,
    Outcome.UNNAMED,
)


def relay_warning(outcomes: Mapping[str, int], *, prefix: str, check_after: int) -> str | None:
    """The warning of a relay middleware whose prefix never matched, or one whose
    relayed requests never matched a declared word; None while it counts."""
    seen = sum(outcomes.values())
    if seen < check_after:
        return None
    under = seen - outcomes.get(Outcome.UNMATCHED, 0) - outcomes.get(Outcome.METHOD, 0)
    if under == 0:
        return (
            f"RelayTracking(prefix={prefix!r}) has seen {seen} requests and none under "
            f"{prefix!r}, so it counts nothing: set prefix= to the path the relay route "
            "is served at (as the browser requests it, below any root_path)"
        )
    unknown = outcomes.get(Outcome.UNKNOWN_NAME, 0)
    if outcomes.get(Outcome.COUNTED, 0) == 0 and unknown >= check_after:
        return (
            f"RelayTracking(prefix={prefix!r}) has relayed {under} requests and none matched "
            "a declared resource (all counted as unknown_name): declare the upstream's "
            "resources (resources=[*DEFAULT_RELAY_RESOURCES, ...]) or templates={...}"
        )
    return None


@dataclass(frozen=True)
class Flush:
    """What a middleware hands to the outbox: the counts since the last flush and its warning."""

    source: str
    delta: dict[str, int]
    warning: str | None


class Tally:
    """What one middleware saw, by :class:`Outcome`, since the process started.

    ``add`` is the per-request call (a dict increment under no lock: only the event
    loop thread adds); ``take`` and ``restore`` run in the flushing thread and
    exchange the unflushed part under a lock.
    """

    def __init__(self, source: str, warn: Callable[[Mapping[str, int]], str | None]) -> None:
        self.source = source
        self._warn = warn
        self.total: Counter[str] = Counter()
        #: Requests seen (the sum of ``total``, kept as it goes: read on every request).
        self.seen = 0
        self._flushed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.warning: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.total[outcome] += 1
        self.seen += 1

    def check(self) -> str | None:
        """Re-evaluate the warning; returns it only the first time it appears."""
        warning = self._warn(dict(self.total))
        new = warning is not None and self.warning is None
        self.warning = warning
        return warning if new else None

    def take(self) -> Flush | None:
        """The counts not yet flushed (None when there are none)."""
        with self._lock:
            now = dict(self.total)
            delta = {k: n - self._flushed.get(k, 0) for k, n in now.items()}
            delta = {k: n for k, n in delta.items() if n > 0}
            if not delta:
                return None
            self._flushed = Counter(now)
            return Flush(self.source, delta, self.warning)

    def restore(self, flush: Flush) -> None:
        """A flush that could not be written: its counts go into the next one."""
        with self._lock:
            self._flushed.subtract(flush.delta)


@dataclass(frozen=True)
class Relay:
    """What the relay middlewares (ASGI, WSGI, Django) share: the prefix the relayed calls
    are served under, the vocabulary that names them, and their count rule."""

    prefix: str  # without a trailing "/"; "" for the site's root
    vocabulary: Vocabulary

    @classmethod
    def build(
        cls, prefix: str, resources: Iterable[str], templates: Mapping[str, str] | None
    ) -> Relay:
        """:raises ValueError: for a prefix, resource or template that cannot be used."""
        if not prefix.startswith("/"):
            raise ValueError(f"relay prefix {prefix!r} must start with '/', e.g. '/api/relay'")
        return cls(prefix.rstrip("/"), Vocabulary.build(resources, templates))

    @property
    def source(self) -> str:
        """The middleware's name in the tally and its warnings."""
        return f"RelayTracking {self.prefix or '/'}"

    def warning(self, check_after: int) -> Callable[[Mapping[str, int]], str | None]:
        """The tally's warning for this relay (:func:`relay_warning`)."""
        return partial(relay_warning, prefix=self.prefix or "/", check_after=check_after)

    def rest(self, path: str) -> str | None:
        """The path after the prefix, or None when ``path`` is not under it."""
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return None

    def decide(self, method: str, status: int, rest: str | None) -> tuple[Outcome, str | None]:
        """The count rule for one finished request (``rest``: :meth:`rest` of its path): a
        relayed call that no declared word names is a dropped ``unknown_name``."""
        if rest is None:
            return Outcome.UNMATCHED, None
        outcome, name = decide(
            method, status, matched=True, name=lambda: self.vocabulary.name(method, rest)
        )
        return (Outcome.UNKNOWN_NAME if outcome is Outcome.UNNAMED else outcome), name
