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
from typing import TYPE_CHECKING, Any, Final

from outbox.web.counting import (
    DEFAULT_CHECK_AFTER,
    DEFAULT_RELAY_PREFIX,
    OWN_ROUTE_MARK,
    Outcome,
    Relay,
    decide,
    route_warning,
)
from outbox.web.naming import (
    DEFAULT_RELAY_RESOURCES,
    DEFAULT_STRIP_PREFIX,
    VERBS,
    TemplateRules,
    mark_of,
    name_from_template,
)
from outbox.web.tracking import DEFAULT_FLUSH_EVERY, Tracking, Writes

if TYPE_CHECKING:
    from outbox.client import Telemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

log = logging.getLogger("outbox.web")

#: Mounts followed when reading a template through ``Mount`` routes.
_MAX_MOUNT_DEPTH: Final = 8


class _AsyncTracking(Tracking):
    """A tracking middleware on an event loop: the tally is flushed in the loop's executor,
    and when the server shuts down (the ASGI lifespan)."""

    _flushing: asyncio.Future[bool] | None = None

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


async def _send_status(send: Send, box: list[int], message: Message) -> None:
    if message["type"] == "http.response.start":
        box[0] = int(message["status"])
    await send(message)


class RouteTracking(_AsyncTracking):
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


class RelayTracking(_AsyncTracking):
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
