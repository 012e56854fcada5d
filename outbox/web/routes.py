"""The routes a host app mounts: UI actions, settings, the privacy page, help, static files.

::

    from outbox.web import telemetry_routes
    app = Starlette(routes=[*my_routes, *telemetry_routes(ui_actions=["bulk_edit"])])

=====================================  ==========================================
``POST /api/telemetry/ui-actions``     counts from the browser (``telemetry.js``)
``GET  /api/settings/telemetry``       the state, what decided it, what is collected
``PUT  /api/settings/telemetry``       ``{"enabled": true|false}`` (admin only)
``GET  /settings/privacy``             the privacy settings page
``GET  /api/telemetry/help``           help-widget text as JSON
``GET  /telemetry/help``               help-widget text as an HTML fragment
``GET  /telemetry/static/{file}``      ``telemetry.js``, ``privacy.js``, ``telemetry.css``
=====================================  ==========================================

Every route but the static files asks the ``authorize`` hook first. The outbox
is used from a worker thread (``run_in_threadpool``), never on the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from importlib import resources
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from outbox.client import Telemetry
from outbox.config import Decision
from outbox.errors import OutboxError
from outbox.web import validation
from outbox.web.authorize import Authorize, same_origin
from outbox.web.help import help_html, help_json
from outbox.web.page import CONTENT_SECURITY_POLICY, Paths, privacy_page
from outbox.web.validation import Rejection, UIActions
from outbox.web.view import (
    DEFAULT_INSIGHTS_URL,
    DEFAULT_PRIVACY_POLICY_URL,
    Links,
    settings_view,
    update_view,
)

STATIC_FILES: Final[dict[str, str]] = {
    "telemetry.js": "text/javascript; charset=utf-8",
    "privacy.js": "text/javascript; charset=utf-8",
    "telemetry.css": "text/css; charset=utf-8",
}

_NO_STORE: Final = {"Cache-Control": "no-store"}
_WHAT: Final = {
    "ui_actions": "send UI-action counts",
    "read_settings": "read the telemetry settings",
}


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status, headers=_NO_STORE)


def _rejected(r: Rejection) -> JSONResponse:
    return JSONResponse(r.as_json(), r.status, headers=_NO_STORE)


async def _read_body(request: Request, limit: int) -> bytes | Rejection:
    """The body, refusing more than ``limit`` bytes: by Content-Length, then while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return Rejection(400, "invalid_length", "Content-Length is not a number")
        if int(declared) > limit:
            return Rejection(413, "too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return Rejection(413, "too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_content(request: Request) -> Rejection | None:
    media = validation.media_type(request.headers.get("content-type"))
    if media != "application/json":
        return Rejection(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media or 'no content type'}",
        )
    return None


class TelemetryEndpoints:
    """The handlers behind :func:`telemetry_routes`; one instance per mounted set."""

    def __init__(
        self,
        *,
        telemetry: Telemetry,
        authorize: Authorize,
        ui_actions: frozenset[str],
        links: Links,
        paths: Paths,
    ) -> None:
        self.telemetry = telemetry
        self.authorize = authorize
        self.ui_actions = ui_actions
        self.links = links
        self.paths = paths
        package = resources.files("outbox.web").joinpath("static")
        self.static_files = {name: package.joinpath(name).read_bytes() for name in STATIC_FILES}

    async def _allowed(self, request: Request, action: str) -> bool:
        answer = self.authorize(request, action)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)

    def _forbidden(self, action: str) -> JSONResponse:
        what = _WHAT.get(action, action)
        return _error(403, "forbidden", f"this request may not {what} (authorize hook said no)")

    async def _decision(self) -> Decision:
        return await run_in_threadpool(self.telemetry.decision)

    def _paths(self, request: Request) -> Paths:
        """The paths as the browser sees them (under the app's mount point, if any)."""
        return self.paths.under(str(request.scope.get("root_path", "")))

    # -- POST /api/telemetry/ui-actions --------------------------------------------------

    async def post_ui_actions(self, request: Request) -> Response:
        if not await self._allowed(request, "ui_actions"):
            return self._forbidden("ui_actions")
        if not (await self._decision()).collecting:
            return Response(status_code=204, headers=_NO_STORE)
        body = _json_content(request) or await _read_body(request, validation.MAX_BODY_BYTES)
        result = (
            body
            if isinstance(body, Rejection)
            else validation.parse_ui_actions(body, self.ui_actions)
        )
        if isinstance(result, Rejection):
            await run_in_threadpool(self.telemetry.count_dropped, "invalid_name", result.dropped)
            return _rejected(result)
        return JSONResponse(await run_in_threadpool(self._store, result), 202, headers=_NO_STORE)

    def _store(self, actions: UIActions) -> dict[str, Any]:
        accepted = not_stored = 0
        for name, count in actions.declared.items():
            if self.telemetry.track_ui_action(name, count):
                accepted += count
            else:  # switched off meanwhile, or a storage problem (counted by the outbox)
                not_stored += count
        unknown = sum(actions.unknown.values())
        if unknown:
            self.telemetry.count_dropped("unknown_name", unknown)
        return {
            "accepted": accepted,
            "dropped": unknown + not_stored,
            "dropped_by_reason": {"unknown_name": unknown, "not_stored": not_stored},
        }

    # -- GET/PUT /api/settings/telemetry -------------------------------------------------

    async def get_settings(self, request: Request) -> Response:
        if not await self._allowed(request, "read_settings"):
            return self._forbidden("read_settings")
        return JSONResponse(settings_view(await self._decision(), self.links), headers=_NO_STORE)

    async def put_settings(self, request: Request) -> Response:
        if not await self._allowed(request, "admin"):
            return _error(
                403, "forbidden", "only an administrator may turn usage sharing on or off"
            )
        body = _json_content(request) or await _read_body(request, validation.MAX_SETTINGS_BYTES)
        wanted = body if isinstance(body, Rejection) else validation.parse_settings_update(body)
        if isinstance(wanted, Rejection):
            return _rejected(wanted)
        decision = await self._decision()
        if decision.locked:
            return _error(
                409,
                "locked",
                f"{decision.reason}: the environment decides, so this setting cannot be "
                f"changed here; unset {decision.source} and restart Helios",
                variable=decision.source,
            )
        try:
            decision, discarded = await run_in_threadpool(self.telemetry.set_enabled, wanted)
        except OutboxError as e:
            return _error(503, "storage_error", str(e))
        return JSONResponse(update_view(decision, self.links, discarded), headers=_NO_STORE)

    # -- pages, help and static files ----------------------------------------------------

    async def get_page(self, request: Request) -> Response:
        if not await self._allowed(request, "read_settings"):
            return HTMLResponse("<p>Forbidden</p>", 403)
        html = privacy_page(await self._decision(), self.links, self._paths(request))
        return HTMLResponse(
            html,
            headers={**_NO_STORE, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    async def get_help_json(self, request: Request) -> Response:
        if not await self._allowed(request, "read_settings"):
            return self._forbidden("read_settings")
        return JSONResponse(help_json(self.links, self._paths(request).page))

    async def get_help_html(self, request: Request) -> Response:
        if not await self._allowed(request, "read_settings"):
            return HTMLResponse("", 403)
        return HTMLResponse(help_html(self.links, self._paths(request).page))

    async def get_static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static_files:
            return Response("not found", 404, media_type="text/plain")
        return Response(
            self.static_files[name],
            headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"},
        )


def telemetry_routes(
    *,
    telemetry: Telemetry | None = None,
    authorize: Authorize = same_origin,
    ui_actions: Iterable[str] = (),
    privacy_policy_url: str = DEFAULT_PRIVACY_POLICY_URL,
    insights_url: str = DEFAULT_INSIGHTS_URL,
    paths: Paths | None = None,
) -> list[BaseRoute]:
    """The telemetry routes, ready to put in a Starlette app's ``routes``.

    :param telemetry: where to count and what decides the state (default: the
        :data:`outbox.telemetry` singleton).
    :param authorize: ``authorize(request, action) -> bool`` (or awaitable), asked
        with ``"ui_actions"``, ``"read_settings"`` or ``"admin"``; default:
        :func:`~outbox.web.authorize.same_origin` for all three. Pass your own to
        restrict ``"admin"`` to administrators.
    :param ui_actions: the UI action names the frontend may send; any other valid
        name is counted as dropped ``unknown_name``, not stored.
    :param privacy_policy_url: linked from the page and returned by the settings API.
    :param insights_url: the public insights dashboard (also the badge's link).
    :param paths: where the API, the page, the help and the static files are served
        (default :class:`~outbox.web.page.Paths`: the paths in the table above).
    :raises ValueError: for a UI action name or link that cannot be used.
    """
    if telemetry is None:
        import outbox

        telemetry = outbox.telemetry
    paths = paths or Paths()
    endpoints = TelemetryEndpoints(
        telemetry=telemetry,
        authorize=authorize,
        ui_actions=validation.validate_declared(ui_actions),
        links=Links(privacy_policy_url, insights_url),
        paths=paths,
    )
    e = endpoints
    return [
        Route(paths.ui_actions, e.post_ui_actions, methods=["POST"], name="telemetry:ui_actions"),
        Route(paths.settings, e.get_settings, methods=["GET"], name="telemetry:settings"),
        Route(paths.settings, e.put_settings, methods=["PUT"], name="telemetry:settings_update"),
        Route(paths.page, e.get_page, methods=["GET"], name="telemetry:privacy_page"),
        Route(paths.help_json, e.get_help_json, methods=["GET"], name="telemetry:help_json"),
        Route(paths.help_html, e.get_help_html, methods=["GET"], name="telemetry:help_html"),
        Route(paths.static + "/{name}", e.get_static, methods=["GET"], name="telemetry:static"),
    ]
