"""The synchronous side of the web integration (WSGI; Flask and Django), framework-neutral.

What the Flask and Django adapters share, so that each only finds the matched route
template and wires itself in:

* :class:`SyncTracking`: the tally, writer thread and flush every middleware has
  (:mod:`outbox.web.tracking`), made safe for threaded servers (one lock around the
  per-request tally) and flushed from a thread and at interpreter exit (WSGI has no
  lifespan);
* :class:`RouteTracking`: a WSGI middleware counting each request after its response
  was sent (when the server closes the response iterable), by the route a
  framework-supplied ``route(environ)`` reports (Flask: ``request.url_rule.rule``);
* :class:`RelayTracking`: a WSGI middleware counting relayed requests under a prefix by
  the declared vocabulary, like the ASGI one;
* :func:`serve`: the five steps of :mod:`outbox.web.endpoints` for one telemetry route,
  given the request's method, headers, body reader and the host's hook.

No framework import: ``tests/web/test_core_imports.py`` blocks them.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from outbox.web.authorize import Headers
from outbox.web.counting import (
    DEFAULT_CHECK_AFTER,
    DEFAULT_RELAY_PREFIX,
    Outcome,
    Relay,
    decide,
    route_warning,
)
from outbox.web.endpoints import Reply, Spec, TelemetryEndpoints
from outbox.web.naming import (
    DEFAULT_RELAY_RESOURCES,
    DEFAULT_STRIP_PREFIX,
    VERBS,
    TemplateRules,
    name_from_template,
)
from outbox.web.page import Csrf
from outbox.web.tracking import DEFAULT_FLUSH_EVERY, Tracking, Writes
from outbox.web.view import Viewer

if TYPE_CHECKING:
    from outbox.client import Telemetry

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

log = logging.getLogger("outbox.web")

_trackers: weakref.WeakSet[SyncTracking] = weakref.WeakSet()


class SyncTracking(Tracking):
    """The tally, writer and flush of a tracking middleware in a synchronous server.

    Requests may come from several threads at once (gunicorn's ``gthread``, waitress,
    Django's ``runserver``): the tally is added to under a lock. The tally is written
    from a short-lived thread, never on a request's thread, and at interpreter exit
    (a graceful stop of a gunicorn worker) after the writer thread is drained.
    """

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **options)
        #: The WSGI app passed on to (Django's middlewares: its ``get_response``).
        self.inner: WSGIApp = app
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        _trackers.add(self)

    def record(self, outcome: Outcome, name: str | None) -> None:
        """Tally one finished request; hand its count (or unknown_name drop) to the writer."""
        self._record(outcome, name)

    def _tally(self, outcome: Outcome) -> bool:
        with self._lock:  # requests of several threads
            return super()._tally(outcome)

    def _check_and_flush(self) -> None:
        with self._lock:
            warning = self.tally.check()
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._next_flush = time.monotonic() + self.flush_every
            self._flusher = threading.Thread(
                target=self.flush, name=f"helios-telemetry {self.tally.source} tally", daemon=True
            )
            self._flusher.start()
        if warning is not None:
            log.warning("telemetry: %s", warning)

    def close(self) -> None:
        """Store what the writer holds and write the tally (interpreter exit; tests)."""
        with self._lock:
            self.tally.check()
        self.drain(timeout=5.0)
        self.flush()


@atexit.register
def _close_all() -> None:
    for tracker in list(_trackers):
        tracker.close()


# -- the response, closed --------------------------------------------------------------


class _Closing:
    """The app's response iterable; calls ``done(failed)`` once, when the server closes it
    (PEP 3333: after the last byte was sent, or the client went away)."""

    def __init__(self, result: Iterable[bytes], done: Callable[[bool], None]) -> None:
        self._result = result
        self._done: Callable[[bool], None] | None = done
        self._failed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        done, self._done = self._done, None
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if done is not None:
                done(self._failed)


def _call(
    app: WSGIApp,
    environ: Environ,
    start_response: StartResponse,
    done: Callable[[int, bool], None],
) -> Iterable[bytes]:
    """Run ``app``; call ``done(status, failed)`` after the response (0: none started)."""
    box = [0]

    def start(status: str, headers: Any, exc_info: Any = None) -> Any:
        box[0] = int(status.split(" ", 1)[0])
        return start_response(status, headers, exc_info)

    try:
        result = app(environ, start)
    except BaseException:
        done(0, True)
        raise
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
        done(box[0], False)  # keep the server's sendfile: the status is known already
        return result
    return _Closing(result, lambda failed: done(box[0], failed))


# -- routed apps -----------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedRoute:
    """What a framework says of the route that served a request.

    :param template: the route's whole template (``/api/users/<int:user_id>``), or None
        when it serves no API (static files): not counted (``unnamed``).
    :param own: one of the telemetry's own routes.
    :param mark: the route's own name or ``False`` (opted out), see
        :func:`outbox.web.naming.mark_of`.
    """

    template: str | None
    own: bool = False
    mark: str | bool | None = None


class RouteTracking(SyncTracking):
    """Count each request of a WSGI app by the route template its framework matched.

    ``route(environ)`` returns the :class:`MatchedRoute` after the app answered (None: no
    route matched); the Flask adapter reads it from ``request.url_rule``. Counted when
    the server closes the response, by :func:`outbox.web.counting.decide`.
    """

    def __init__(
        self,
        app: Any,
        *,
        route: Callable[[Environ], MatchedRoute | None],
        telemetry: Telemetry | None = None,
        strip_prefix: str = DEFAULT_STRIP_PREFIX,
        strip_versions: bool = True,
        check_after: int = DEFAULT_CHECK_AFTER,
        flush_every: float = DEFAULT_FLUSH_EVERY,
        writes: Writes = "thread",
        source: str = "RouteTracking",
    ) -> None:
        super().__init__(
            app,
            telemetry=telemetry,
            source=source,
            check_after=check_after,
            flush_every=flush_every,
            writes=writes,
            warn=partial(route_warning, check_after=check_after),
        )
        self.route = route
        self.rules = TemplateRules(strip_prefix, strip_versions)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method: str = environ.get("REQUEST_METHOD", "GET")
        if method not in VERBS:
            result = self.inner(environ, start_response)
            self._record(Outcome.METHOD, None)
            return result
        return _call(self.inner, environ, start_response, partial(self._done, environ, method))

    def _done(self, environ: Environ, method: str, status: int, failed: bool) -> None:
        if failed:
            self._record(Outcome.ERROR, None)
            return
        self._record(*self.decide(method, status, self.route(environ)))

    def decide(
        self, method: str, status: int, route: MatchedRoute | None
    ) -> tuple[Outcome, str | None]:
        """The count rule for one finished request (Django's middleware calls it too)."""
        return decide(
            method,
            status,
            matched=route is not None,
            own=route is not None and route.own,
            mark=None if route is None else route.mark,
            name=lambda: self._name(method, route),
        )

    def _name(self, method: str, route: MatchedRoute | None) -> str | None:
        if route is None or route.template is None:
            return None
        return name_from_template(method, route.template, self.rules)


# -- relays ---------------------------------------------------------------------------------


class RelayTracking(SyncTracking):
    """Count each relayed API call by the declared words of its upstream path (WSGI).

    The WSGI twin of :class:`outbox.web.asgi.RelayTracking`: the request's
    ``PATH_INFO`` (below ``SCRIPT_NAME``) under ``prefix`` is named from the
    vocabulary; a relayed request matching nothing declared is counted as dropped
    ``unknown_name``; counted after the response, 2xx only.
    """

    def __init__(
        self,
        app: Any,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method: str = environ.get("REQUEST_METHOD", "GET")
        rest = self.relay.rest(environ.get("PATH_INFO", ""))
        if rest is None or method not in VERBS:
            result = self.inner(environ, start_response)
            self._record(Outcome.UNMATCHED if rest is None else Outcome.METHOD, None)
            return result
        return _call(self.inner, environ, start_response, partial(self._done, method, rest))

    def _done(self, method: str, rest: str, status: int, failed: bool) -> None:
        self._record(
            *(self.relay.decide(method, status, rest) if not failed else (Outcome.ERROR, None))
        )


# -- serving the telemetry routes -------------------------------------------------------------


#: Bytes read from a request body at a time.
_CHUNK: Final = 64 * 1024


def read_limited(read: Callable[[int], bytes], limit: int) -> bytes | None:
    """The body through ``read(n)``, or None past ``limit`` bytes (counted while reading)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def sync_hook(authorize: Callable[[Any, str], Any]) -> Callable[[Any, str], bool]:
    """The host's hook as a plain function; an ``async`` hook is refused with the fix."""
    if inspect.iscoroutinefunction(authorize):
        raise ValueError(
            "authorize= is an async function, but this adapter serves requests synchronously: "
            "pass a plain function (def authorize(request, action) -> bool)"
        )

    def ask(request: Any, action: str) -> bool:
        answer = authorize(request, action)
        if inspect.isawaitable(answer):
            close = getattr(answer, "close", None)
            if close is not None:
                close()  # never awaited: say so instead of a RuntimeWarning
            raise TypeError("authorize= returned an awaitable; pass a plain function")
        return bool(answer)

    return ask


def serve(
    core: TelemetryEndpoints,
    spec: Spec,
    *,
    request: Any,
    method: str,
    headers: Headers,
    ask: Callable[[Any, str], bool] | None,
    read: Callable[[int], bytes],
    base: Callable[[], str],
    name: str = "",
    csrf: Callable[[], Csrf | None] = lambda: None,
) -> Reply:
    """One telemetry route, in the steps of :mod:`outbox.web.endpoints`.

    :param request: the framework's request, handed to the hook.
    :param ask: the host's ``authorize`` hook (:func:`sync_hook`), or None.
    :param read: reads up to ``n`` bytes of the body.
    :param base: where the routes are mounted as the browser sees them (for links).
    :param name: the static file's name.
    :param csrf: the CSRF token the page must carry (Django), if any.
    """
    reply = core.check(spec, method, headers)
    if reply is not None:
        return reply
    if spec.action is not None:
        reply = core.grant(spec, None if ask is None else ask(request, spec.action))
        if reply is not None:
            return reply
    else:  # the static files: no outbox
        return core.respond(spec, name=name)
    body: bytes | None = b""
    if spec.body_limit:
        reply = core.gate(spec, headers)
        if reply is not None:
            return reply
        body = read_limited(read, spec.body_limit)
    admin = spec.action == "admin" or (
        ask is not None and spec.asks_admin and ask(request, "admin")
    )
    viewer = Viewer(hook=ask is not None, admin=admin)
    page_csrf = csrf() if spec.name == "privacy_page" else None
    return core.respond(spec, body, base=base(), viewer=viewer, csrf=page_csrf)
