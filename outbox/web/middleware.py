"""Counting relayed API calls: a pure ASGI middleware.

For every HTTP request under the relay prefix it derives the API name from the
method and the rest of the path (``GET /api/relay/users/42`` → ``users.get``,
see :func:`outbox.api_name`), tracks it, and then hands the request on
untouched: same scope, same ``receive``, same ``send``. It never changes,
delays for long or fails a request: a track call never raises, and the call is
guarded anyway. Requests outside the prefix are not looked at.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would wrap the
response stream (and break streaming relays and background tasks).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from outbox.client import Telemetry
from outbox.names import api_name

log = logging.getLogger("outbox.web")

DEFAULT_RELAY_PREFIX = "/api/relay"


def _default_telemetry() -> Telemetry:
    import outbox

    return outbox.telemetry


class RelayTracking:
    """Track one API call per HTTP request whose path is under ``prefix``.

    :param app: the ASGI app to pass every request on to.
    :param prefix: the relay prefix, e.g. ``/api/relay``; the name is derived
        from the path after it. Paths are taken relative to the app's ``root_path``.
    :param telemetry: where to count (default: the :data:`outbox.telemetry` singleton).

    With Starlette: ``app.add_middleware(RelayTracking, prefix="/api/relay")``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str = DEFAULT_RELAY_PREFIX,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"relay prefix {prefix!r} must start with '/', e.g. '/api/relay'")
        self.app = app
        self.prefix = prefix.rstrip("/")
        self._telemetry = telemetry
        self._warned = False

    @property
    def telemetry(self) -> Telemetry:
        if self._telemetry is None:
            self._telemetry = _default_telemetry()
        return self._telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            rest = self._relayed_path(scope)
            if rest is not None:
                self._track(scope.get("method", ""), rest)
        await self.app(scope, receive, send)

    def _relayed_path(self, scope: Scope) -> str | None:
        """The path after the prefix, or None when the request is not relayed."""
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return None

    def _track(self, method: str, rest: str) -> None:
        try:
            name = api_name(method, rest)
            if name is None:
                # A relayed call with no resource name in it ("/api/relay/42"): it
                # happened, so it is counted, as a loss.
                self.telemetry.count_dropped("invalid_name")
            else:
                self.telemetry.track_api_call(name)
        except Exception:  # a track call never raises; this guards the request anyway
            if not self._warned:
                self._warned = True
                log.warning("telemetry: relay tracking failed (request unaffected)", exc_info=True)
