"""``telemetry_routes()`` for Starlette and FastAPI: translation only.

Every decision is in :class:`outbox.web.endpoints.TelemetryEndpoints`; this module
turns a Starlette ``Request`` into its inputs and its :class:`~outbox.web.endpoints.Reply`
into a ``Response``, asks the host's ``authorize`` hook (plain or ``async``), reads
bodies up to their limit, and runs everything that touches the outbox in the
threadpool, never on the event loop.

The routes come as a :class:`TelemetryRoutes` router, which is what every way of
wiring accepts: ``Starlette(routes=[*telemetry_routes(...)])`` (it is iterable),
``app.mount("/", telemetry_routes(...))`` (it is an ASGI app) and, when FastAPI is
installed, ``app.include_router(telemetry_routes(...))`` (it is then a FastAPI
``APIRouter``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from outbox.web.asgi import matched_route
from outbox.web.authorize import Authorize, refuse_same_origin
from outbox.web.counting import OWN_ROUTE_MARK
from outbox.web.endpoints import (
    Reply,
    Spec,
    TelemetryEndpoints,
    default_telemetry,
    mounted_at,
)
from outbox.web.page import Paths
from outbox.web.view import DEFAULT_INSIGHTS_URL, DEFAULT_PRIVACY_POLICY_URL, Links, Viewer

if TYPE_CHECKING:
    from fastapi import APIRouter as _RouterBase

    from outbox.client import Telemetry
else:
    try:  # an APIRouter is a Starlette Router that FastAPI's include_router also takes
        from fastapi import APIRouter as _RouterBase
    except ImportError:  # Starlette alone
        from starlette.routing import Router as _RouterBase


class TelemetryRoutes(_RouterBase):
    """The telemetry routes as one router: iterate it, mount it, or (FastAPI) include it."""

    endpoints: TelemetryEndpoints

    def __iter__(self) -> Iterator[BaseRoute]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, headers=dict(reply.headers))


def _base(request: Request, spec: Spec) -> str:
    """Where the routes are mounted, as the browser addresses them: the ``root_path``
    (a ``Mount``, or the server's ``--root-path``) and, under FastAPI, the prefix of
    ``include_router``."""
    _, path = matched_route(request.scope)
    template = path if isinstance(path, str) else ""
    return mounted_at(template, spec.path, str(request.scope.get("root_path", "")))


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes (counted while reading)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Adapter:
    def __init__(self, endpoints: TelemetryEndpoints, authorize: Authorize | None) -> None:
        self.endpoints = endpoints
        self.authorize = authorize

    async def _ask(self, request: Request, action: str) -> bool:
        assert self.authorize is not None
        answer = self.authorize(request, action)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)

    async def serve(self, spec: Spec, request: Request) -> Reply:
        core = self.endpoints
        reply = core.check(spec, request.method, request.headers)
        if reply is not None:
            return reply
        hook = self.authorize is not None
        if spec.action is not None:
            reply = core.grant(spec, await self._ask(request, spec.action) if hook else None)
            if reply is not None:
                return reply
        if spec.action is None:  # the static files: no outbox, no thread
            return core.respond(spec, name=str(request.path_params.get("name", "")))
        body: bytes | None = b""
        if spec.body_limit:
            reply = await run_in_threadpool(core.gate, spec, request.headers)
            if reply is not None:
                return reply
            body = await _read_body(request, spec.body_limit)
        admin = spec.action == "admin" or (
            hook and spec.asks_admin and await self._ask(request, "admin")
        )
        viewer = Viewer(hook=hook, admin=admin)
        return await run_in_threadpool(
            core.respond, spec, body, base=_base(request, spec), viewer=viewer
        )

    def endpoint(self, spec: Spec) -> Any:
        async def endpoint(request: Request) -> Response:
            return _response(await self.serve(spec, request))

        endpoint.__name__ = f"telemetry_{spec.name}"
        return endpoint


def telemetry_routes(
    *,
    telemetry: Telemetry | None = None,
    authorize: Authorize | None = None,
    ui_actions: Iterable[str] = (),
    origins: Iterable[str] | None = None,
    privacy_policy_url: str = DEFAULT_PRIVACY_POLICY_URL,
    insights_url: str = DEFAULT_INSIGHTS_URL,
    paths: Paths | None = None,
) -> TelemetryRoutes:
    """The telemetry routes for a Starlette or FastAPI app.

    :param telemetry: where to count and what decides the state (default: the
        :data:`outbox.telemetry` singleton).
    :param authorize: ``authorize(request, action) -> bool`` (or awaitable), asked
        with ``"ui_actions"``, ``"read_settings"`` or ``"admin"``. Only an answer of
        True for ``"admin"`` lets a request turn sharing on or off (and shows the
        page's "exactly what is sent"); without a hook the settings endpoint is
        read-only (logged once, here).
    :param ui_actions: the UI action names the frontend may send; any other valid
        name is counted as dropped ``unknown_name``, not stored.
    :param origins: the app's origins as browsers see them
        (``["https://helios.example"]``): requests for any other ``Host`` are refused.
        Without them, sharing can be switched only through a loopback address.
    :param privacy_policy_url: linked from the page and returned by the settings API.
    :param insights_url: the public insights dashboard (also the badge's link).
    :param paths: where the API, the page, the help and the static files are served
        (default :class:`~outbox.web.page.Paths`).
    :raises ValueError: for a UI action name, origin or link that cannot be used, or
        ``authorize=same_origin`` (an origin check, not an authorisation hook).
    """
    refuse_same_origin(authorize)
    if telemetry is None:
        telemetry = default_telemetry()
    endpoints = TelemetryEndpoints(
        telemetry=telemetry,
        hook=authorize is not None,
        ui_actions=ui_actions,
        links=Links(privacy_policy_url, insights_url),
        paths=paths,
        origins=origins,
    )
    adapter = _Adapter(endpoints, authorize)
    routes: list[BaseRoute] = []
    for spec in endpoints.specs():
        route = Route(
            spec.path,
            adapter.endpoint(spec),
            methods=[spec.method],
            name=f"telemetry:{spec.name}",
            include_in_schema=False,
        )
        setattr(route, OWN_ROUTE_MARK, True)
        routes.append(route)
    router = TelemetryRoutes(routes=routes)
    router.endpoints = endpoints
    return router
