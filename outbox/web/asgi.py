"""Counting API calls in an ASGI app (Starlette, FastAPI): two pure ASGI middlewares.

* :class:`RouteTracking` names a request after the route template the router
  matched (``/api/users/{user_id}/groups`` → ``users.groups.list``);
* :class:`RelayTracking` names a relayed request (under a prefix) from a declared
  vocabulary of upstream resources.

Both decide after the response started, by :func:`outbox.web.counting.decide`:
counted once when the status is 2xx and a name could be made of declared words
only. They pass the request on with the same scope and ``receive``; ``send`` is
wrapped only to read the status. Counting never fails or delays a response: after
the response the name is handed to the middleware's writer thread
(:class:`outbox.web.writer.CountWriter`), which stores what is waiting in batches, so
the event loop never waits for SQLite; storing is guarded even though a track call
never raises. Each middleware also keeps a tally by outcome, written to the outbox at
most once a minute (``outbox status`` shows it), and logs one warning when it
cannot be counting anything.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would wrap the
response stream (and break streaming relays and background tasks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

from outbox import store
from outbox.db import transaction
from outbox.errors import OutboxError
from outbox.web.counting import (
    DEFAULT_CHECK_AFTER,
    OWN_ROUTE_MARK,
    Flush,
    Outcome,
    Relay,
    Tally,
    decide,
    route_warning,
)
from outbox.web.endpoints import default_telemetry
from outbox.web.naming import (
    DEFAULT_RELAY_RESOURCES,
    DEFAULT_STRIP_PREFIX,
    VERBS,
    TemplateRules,
    mark_of,
    name_from_template,
)
from outbox.web.writer import CountWriter

if TYPE_CHECKING:
    from outbox.client import Telemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

log = logging.getLogger("outbox.web")

DEFAULT_RELAY_PREFIX: Final = "/api/relay"
#: Seconds between two writes of a middleware's tally to the outbox (at most).
DEFAULT_FLUSH_EVERY: Final = 60.0
#: Mounts followed when reading a template through ``Mount`` routes.
_MAX_MOUNT_DEPTH: Final = 8

Writes = Literal["thread", "inline"]


class _Tracking:
    """What both middlewares share: the telemetry, the write, the tally and its flush."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry | None,
        source: str,
        check_after: int,
        flush_every: float,
        writes: Writes,
        warn: Callable[[Mapping[str, int]], str | None],
    ) -> None:
        if writes not in ("thread", "inline"):
            raise ValueError(f"writes={writes!r}: use 'thread' or 'inline'")
        if check_after < 1 or flush_every < 0:
            raise ValueError("check_after must be at least 1 and flush_every at least 0")
        self.app = app
        self._telemetry = telemetry
        self.tally = Tally(source, warn)
        self.check_after = check_after
        self.flush_every = flush_every
        self.writes = writes
        self._next_flush = time.monotonic() + flush_every
        self._flushing: asyncio.Future[bool] | None = None
        self._failed_once = False
        self.writer = CountWriter(lambda: self.telemetry, source=source)

    @property
    def telemetry(self) -> Telemetry:
        if self._telemetry is None:
            self._telemetry = default_telemetry()
        return self._telemetry

    # -- the per-request path -----------------------------------------------------------

    def _record(self, outcome: Outcome, name: str | None) -> None:
        """Tally one request; store its count (or its unknown_name drop)."""
        due = self._tally(outcome)
        if outcome is Outcome.COUNTED or outcome is Outcome.UNKNOWN_NAME:
            if self.writes == "thread":
                self.writer.put(name)
            else:
                self._write(name)
        if due:
            self._check_and_flush()

    def _tally(self, outcome: Outcome) -> bool:
        """Add ``outcome`` to the tally; True when the tally is due to be checked and flushed."""
        self.tally.add(outcome)
        return self.tally.seen == self.check_after or time.monotonic() >= self._next_flush

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every count handed to the writer thread is stored (tests, shutdown)."""
        return self.writer.drain(timeout)

    def _write(self, name: str | None) -> None:
        try:
            if name is None:
                self.telemetry.count_dropped("unknown_name")
            else:
                self.telemetry.track_api_call(name)
        except Exception:  # a track call never raises; this guards the request anyway
            if not self._failed_once:
                self._failed_once = True
                log.warning(
                    "telemetry: %s failed (request unaffected)", self.tally.source, exc_info=True
                )

    # -- the tally: warning and flush ------------------------------------------------------

    def _check_and_flush(self) -> None:
        warning = self.tally.check()
        if warning is not None:
            log.warning("telemetry: %s", warning)
        if self._flushing is not None and not self._flushing.done():
            return
        self._next_flush = time.monotonic() + self.flush_every
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flushing = loop.run_in_executor(None, self.flush)

    def flush(self) -> bool:
        """Write the tally's unflushed counts to the outbox now (blocking; never raises).

        Nothing is written while telemetry is off or before the outbox exists.

        :returns: True when something was written.
        """
        batch = self.tally.take()
        if batch is None:
            return False
        try:
            written = _write_tally(self.telemetry, batch)
        except Exception:  # noqa: BLE001  # the next flush retries; never into a request
            written = None
        if written is None:
            self.tally.restore(batch)
        return bool(written)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan on; flush the tally when the server shuts down."""

        async def watch() -> Message:
            message: Message = await receive()
            if message.get("type") == "lifespan.shutdown":
                self.tally.check()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self.drain)
                await loop.run_in_executor(None, self.flush)
            return message

        await self.app(scope, watch, send)


def _write_tally(telemetry: Telemetry, batch: Flush) -> bool | None:
    """True: written; False: telemetry is off, the counts go; None: not written (no outbox
    yet, or it failed), keep the counts for the next flush."""
    try:
        with telemetry.connect(create=False) as conn:
            if not telemetry.config.decision(store.org_enabled(conn)).collecting:
                return False
            now = int(time.time())
            with transaction(conn):
                store.add_web_tracking(
                    conn, batch.source, batch.delta, warning=batch.warning, now=now
                )
            return True
    except OutboxError:  # OutboxMissing included: nothing was collected yet
        return None


async def _send_status(send: Send, box: list[int], message: Message) -> None:
    if message["type"] == "http.response.start":
        box[0] = int(message["status"])
    await send(message)


class RouteTracking(_Tracking):
    """Count each API call of a Starlette or FastAPI app by its matched route template.

    ``GET /api/users/42/groups`` routed to ``/api/users/{user_id}/groups`` counts
    ``users.groups.list``; the path that was requested is never looked at. Nested
    routers (``include_router``), ``Mount`` (also with path parameters), ``root_path``,
    path converters and trailing slashes all give the template's words only. See
    :mod:`outbox.web.counting` for what is counted.

    A route names itself with ``@track_as("users.me.get")`` on its endpoint, or opts out
    with ``@not_tracked``. The telemetry's own routes are never counted.

    :param app: the ASGI app (with ``app.add_middleware`` Starlette passes it).
    :param telemetry: where to count (default: the :data:`outbox.telemetry` singleton).
    :param strip_prefix: a leading literal prefix left out of names (default ``"/api"``).
    :param strip_versions: leave out literal version segments after it (``/v2``).
    :param check_after: requests after which a middleware that could not count
        anything logs one warning.
    :param flush_every: seconds between writes of the tally to the outbox.
    :param writes: ``"thread"`` (default: handed to the writer thread, stored in
        batches) or ``"inline"`` (one track call on the event loop after each response;
        slower and it makes the loop wait for SQLite, see ``benchmarks/web_overhead.py``).

    With Starlette or FastAPI: ``app.add_middleware(RouteTracking, telemetry=t)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry | None = None,
        strip_prefix: str = DEFAULT_STRIP_PREFIX,
        strip_versions: bool = True,
        check_after: int = DEFAULT_CHECK_AFTER,
        flush_every: float = DEFAULT_FLUSH_EVERY,
        writes: Writes = "thread",
    ) -> None:
        super().__init__(
            app,
            telemetry=telemetry,
            source="RouteTracking",
            check_after=check_after,
            flush_every=flush_every,
            writes=writes,
            warn=partial(route_warning, check_after=check_after),
        )
        self.rules = TemplateRules(strip_prefix, strip_versions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        if method not in VERBS:
            await self.app(scope, receive, send)
            self._record(Outcome.METHOD, None)
            return
        root: str = scope.get("root_path", "")
        box = [0]
        try:
            await self.app(scope, receive, partial(_send_status, send, box))
        except BaseException:
            self.tally.add(Outcome.ERROR)
            raise
        matched = matched_route(scope)
        route = matched[0]
        own = getattr(route, OWN_ROUTE_MARK, False)
        mark = None if route is None or own else mark_of(scope.get("endpoint"), route)
        outcome, name = decide(
            method,
            box[0],
            matched=route is not None,
            own=own,
            mark=mark,
            name=lambda: self._name(scope, method, root, matched),
        )
        self._record(outcome, name)

    def _name(
        self, scope: Scope, method: str, root: str, matched: tuple[object, str | None]
    ) -> str | None:
        try:
            template = route_template(scope, root, matched)
        except Exception:  # noqa: BLE001  # an odd router: no name, and never the request's problem
            return None
        return None if template is None else name_from_template(method, template, self.rules)


def matched_route(scope: Scope) -> tuple[object, str | None]:
    """The route that served a request, after routing, and its own template (None, None
    when no route matched).

    ``scope["route"]`` is the innermost route the router matched, its template
    ``route.path``. FastAPI ≥ 0.137 keeps a route included with a prefix
    (``include_router``) as it was declared and puts the prefixed template in
    ``scope["fastapi"]["effective_route_context"]`` (as Sentry's and OpenTelemetry's
    instrumentations read it); a plain Starlette route included that way leaves no
    ``scope["route"]`` at all, only that context.
    """
    route = scope.get("route")
    effective = scope.get("fastapi", {}).get("effective_route_context")
    if effective is not None:
        original = getattr(effective, "original_route", None)
        if route is None or original is route:
            path = getattr(effective, "path", "") or getattr(
                getattr(effective, "starlette_route", None), "path", None
            )
            return original, path if isinstance(path, str) else None
    path = getattr(route, "path", None)
    return route, path if isinstance(path, str) else None


def route_template(
    scope: Scope, entry_root_path: str = "", matched: tuple[object, str | None] | None = None
) -> str | None:
    """The whole template of the route that served a request (None: no template).

    When ``Mount`` routes were passed (the ``root_path`` grew), their templates are
    found by matching the request against the mounts again, from the outermost
    router down: never from the path. A ``Mount`` that served a plain ASGI app
    itself (static files) has no route template.

    :param matched: what :func:`matched_route` said of this request, when already asked.
    """
    route, path = matched_route(scope) if matched is None else matched
    if path is None or hasattr(route, "routes"):
        return None
    if scope.get("root_path", "") == entry_root_path:
        return path
    prefix = _mount_prefix(scope, entry_root_path)
    return None if prefix is None else prefix + path


def _mount_prefix(scope: Scope, entry_root_path: str) -> str | None:
    """The templates of the ``Mount`` routes a request passed, joined (None: not found)."""
    from starlette.routing import Match, Mount

    final_root = scope.get("root_path", "")
    routes: Iterable[object] = getattr(scope.get("router"), "routes", ())
    walk: dict[str, Any] = {
        "type": "http",
        "path": scope["path"],
        "root_path": entry_root_path,
        "method": scope.get("method", "GET"),
        "headers": scope.get("headers", []),
        "path_params": {},
    }
    prefix = ""
    for _ in range(_MAX_MOUNT_DEPTH):
        if walk["root_path"] == final_root:
            return prefix
        for mount in routes:
            if isinstance(mount, Mount):
                match, child = mount.matches(walk)
                if match is Match.FULL:
                    prefix += mount.path
                    walk.update(child)
                    routes = mount.routes
                    break
        else:
            return None
    return None


class RelayTracking(_Tracking):
    """Count each relayed API call by the declared words of its upstream path.

    For a request under ``prefix`` (``GET /api/relay/groups/eng/members``), the path
    after it is named from the vocabulary: declared resource words only, every
    other segment a parameter (``groups.members.list``). A relayed request that
    matches nothing declared is counted as dropped ``unknown_name``; requests outside
    the prefix are not looked at. Counted after the response, 2xx only, like
    :class:`RouteTracking`.

    :param app: the ASGI app to pass every request on to.
    :param prefix: the relay prefix (default ``/api/relay``), as requested, below
        the app's ``root_path``.
    :param resources: the upstream's resource paths (``"groups.members"`` is
        ``members`` under ``groups``); default :data:`DEFAULT_RELAY_RESOURCES`.
    :param templates: explicit ``{"GET /users/{id}/photo": "users.photo.get"}``, tried
        first; ``{rest:path}`` at the end matches one or more segments.
    :param telemetry: where to count (default: the :data:`outbox.telemetry` singleton).
    :param check_after, flush_every, writes: as for :class:`RouteTracking`.
    :raises ValueError: for a prefix, resource or template that cannot be used.

    ``app.add_middleware(RelayTracking, prefix="/api/relay",
    resources=[*DEFAULT_RELAY_RESOURCES, "widgets"], telemetry=t)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str = DEFAULT_RELAY_PREFIX,
        resources: Iterable[str] = DEFAULT_RELAY_RESOURCES,
        templates: Mapping[str, str] | None = None,
        telemetry: Telemetry | None = None,
        check_after: int = DEFAULT_CHECK_AFTER,
        flush_every: float = DEFAULT_FLUSH_EVERY,
        writes: Writes = "thread",
    ) -> None:
        self.relay = Relay.build(prefix, resources, templates)
        super().__init__(
            app,
            telemetry=telemetry,
            source=self.relay.source,
            check_after=check_after,
            flush_every=flush_every,
            writes=writes,
            warn=self.relay.warning(check_after),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        rest = self.relay.rest(path[len(root) :] if root and path.startswith(root) else path)
        method: str = scope["method"]
        if rest is None or method not in VERBS:
            await self.app(scope, receive, send)
            self._record(Outcome.UNMATCHED if rest is None else Outcome.METHOD, None)
            return
        box = [0]
        try:
            await self.app(scope, receive, partial(_send_status, send, box))
        except BaseException:
            self.tally.add(Outcome.ERROR)
            raise
        self._record(*self.relay.decide(method, box[0], rest))
