"""The collector's HTTP surface (Starlette): ingest, forget, insights, dashboard.

=========================================  =============================================
``POST /api/instances/heartbeat``          store one heartbeat (DESIGN.md section 2)
``GET /api/instances/{instance_id}``       what is stored about one instance
``DELETE /api/instances/{instance_id}``    forget an instance (``outbox forget``)
``GET /api/insights?days=N&top=K``         the public numbers, JSON
``GET /insights?days=N``                   the public dashboard, HTML
``GET /openapi.json``, ``GET /healthz``    the API description; liveness
=========================================  =============================================

Nothing here reads the client's address or forwarding headers.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector import dashboard, insights, openapi
from collector.batcher import DEFAULT_MAX_QUEUE, Batcher
from collector.errors import CollectorError, PayloadError, StorageBusy
from collector.storage import Storage
from collector.validate import DEFAULT_LIMITS, Limits, check_idempotency_key, parse

log = logging.getLogger(__name__)
access_log = logging.getLogger("collector.access")

#: Bodies larger than this are validated in a worker thread, off the event loop.
_THREAD_PARSE_BYTES: Final = 256 * 1024
RETRY_AFTER_SECONDS: Final = 5
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def _error(exc: CollectorError) -> JSONResponse:
    if isinstance(exc, PayloadError):
        return JSONResponse(exc.as_json(), status_code=exc.status)
    if isinstance(exc, StorageBusy):
        log.warning("storage busy: %s", exc)
        return JSONResponse(
            {"error": f"the collector is busy, try again later: {exc}"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.error("storage failed: %s", exc)
    return JSONResponse({"error": "the collector's database failed; try again later"}, 500)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise PayloadError(400, "Content-Length is not a number")
        if len(declared) > 18 or int(declared) > limit:
            raise PayloadError(413, f"the body is {declared[:20]} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_type_is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= high:
        raise PayloadError(422, f"{name} must be an integer from 1 to {high}", name)
    return int(raw)


def _instance_id(request: Request) -> str:
    """The path's instance id, canonical (the route only matches UUIDs)."""
    return str(request.path_params["instance_id"])


def create_app(
    storage: Storage,
    *,
    clock: Callable[[], float] = time.time,
    limits: Limits = DEFAULT_LIMITS,
    writers: int | None = None,
    max_batch: int = 256,
    max_queue: int | None = None,
    migrate: bool = True,
    access_log_enabled: bool = False,
) -> ASGIApp:
    """Build the collector's ASGI app on ``storage``.

    :param storage: the database (tests pass their own, e.g. one that fails on purpose).
    :param clock: unix seconds: receipt times, "today" and "active" for insights.
    :param limits: body and payload size limits.
    :param writers: concurrent write transactions; default 1 on SQLite, 2 on PostgreSQL.
    :param max_batch: heartbeats stored per transaction at most.
    :param max_queue: heartbeats waiting at most before answering 503.
    :param migrate: create or upgrade the schema now (the CLI always does).
    :param access_log_enabled: log one line per request, without the client's address.
    """
    if migrate:
        storage.migrate(now=int(clock()))
    batcher = Batcher(
        storage,
        clock=clock,
        writers=writers or (1 if storage.dialect == "sqlite" else 2),
        max_items=max_batch,
        max_queue=max_queue or DEFAULT_MAX_QUEUE,
    )

    async def heartbeat(request: Request) -> Response:
        try:
            if not _content_type_is_json(request):
                raise PayloadError(415, "send the heartbeat as Content-Type: application/json")
            body = await read_body(request, limits.max_body)
            if len(body) > _THREAD_PARSE_BYTES:
                hb = await anyio.to_thread.run_sync(lambda: parse(body, limits=limits))
            else:
                hb = parse(body, limits=limits)
            check_idempotency_key(request.headers.get("idempotency-key"), hb)
            outcome = await batcher.submit(hb)
        except CollectorError as e:
            return _error(e)
        if outcome.status == "conflict":
            log.warning("heartbeat %s: conflict, a different body was stored", hb.heartbeat_id)
            return JSONResponse(
                {
                    "error": f"heartbeat {hb.heartbeat_id} was already received with a "
                    "different body; nothing was changed",
                    "field": "heartbeat_id",
                    "payload_sha256": outcome.payload_sha256,
                },
                status_code=409,
            )
        return JSONResponse({"status": outcome.status, "payload_sha256": outcome.payload_sha256})

    async def forget(request: Request) -> Response:
        try:
            iid = _instance_id(request)
            removed = await anyio.to_thread.run_sync(storage.forget, iid)
        except CollectorError as e:
            return _error(e)
        if removed is None:
            return JSONResponse({"error": "no heartbeat from this instance is stored"}, 404)
        log.info(
            "forgot an instance: %d heartbeats, %d rows", removed.heartbeats, removed.metric_rows
        )
        return JSONResponse(
            {
                "status": "forgotten",
                "instance_id": removed.instance_id,
                "heartbeats": removed.heartbeats,
                "metric_rows": removed.metric_rows,
                "counts": removed.counts,
            }
        )

    async def instance(request: Request) -> Response:
        try:
            iid = _instance_id(request)
            info = await anyio.to_thread.run_sync(storage.instance, iid)
        except CollectorError as e:
            return _error(e)
        if info is None:
            return JSONResponse({"error": "no heartbeat from this instance is stored"}, 404)
        return JSONResponse(
            {
                "instance_id": info.instance_id,
                "first_seen": info.first_seen,
                "last_seen": info.last_seen,
                "edition": info.edition,
                "version": info.version,
                "last_sequence": info.last_sequence,
                "heartbeats": info.heartbeats,
                "missing": info.missing,
                "repeats": info.repeats,
                "gaps": [list(g) for g in info.gaps],
                "totals": info.totals,
            }
        )

    async def one_instance(request: Request) -> Response:
        # One route for both methods, so that a 405 lists both in Allow.
        return await (forget(request) if request.method == "DELETE" else instance(request))

    async def _insights(request: Request) -> dict[str, Any]:
        days = _int_param(request, "days", 30, insights.MAX_DAYS)
        top = _int_param(request, "top", 10, insights.MAX_TOP)
        now = int(clock())
        return await anyio.to_thread.run_sync(
            storage.read, lambda conn: insights.collect(conn, now=now, days=days, top=top)
        )

    async def insights_json(request: Request) -> Response:
        try:
            return JSONResponse(await _insights(request))
        except CollectorError as e:
            return _error(e)

    async def insights_html(request: Request) -> Response:
        try:
            doc = await _insights(request)
        except CollectorError as e:
            return _error(e)
        return HTMLResponse(
            dashboard.render(doc),
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )

    async def health(request: Request) -> Response:
        up = await anyio.to_thread.run_sync(storage.ping)
        if not up:
            return JSONResponse({"error": "the database does not answer"}, 503)
        return JSONResponse({"status": "ok", "database": storage.dialect})

    spec = openapi.document(limits)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def root(request: Request) -> Response:
        return RedirectResponse("/insights")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await batcher.aclose()

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and methods answer JSON like everything else.
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    app = Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            Route("/api/instances/heartbeat", heartbeat, methods=["POST"]),
            # ``uuid``: "heartbeat" (GET on the ingest URL) is no instance id, so it gets 405.
            Route("/api/instances/{instance_id:uuid}", one_instance, methods=["GET", "DELETE"]),
            Route("/api/insights", insights_json, methods=["GET"]),
            Route("/insights", insights_html, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/", root, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.storage = storage
    app.state.batcher = batcher
    return AccessLog(app) if access_log_enabled else app


class AccessLog:
    """One log line per request: method, path (ids masked), status, duration.

    Deliberately no client address, no query string, no headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # app.state etc. of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            access_log.info(
                "%s %s %d %.1fms",
                scope["method"],
                _UUID_RE.sub("{id}", scope["path"]),
                status,
                (time.perf_counter() - start) * 1000,
            )
