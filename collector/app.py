"""The collector's HTTP surface (Starlette): ingest, forget, insights, dashboard.

=========================================  =============================================
``POST /api/instances/heartbeat``          store one heartbeat (DESIGN.md section 2)
``POST /api/instances/import``             store one exported heartbeat; answer a receipt
``GET /api/instances/{instance_id}``       what is stored about one instance
``DELETE /api/instances/{instance_id}``    forget an instance (``outbox forget``)
``GET /api/insights?days=N&top=K``         the public numbers, JSON
``GET /insights?days=N``                   the public dashboard, HTML
``GET /openapi.json``, ``GET /healthz``    the API description; liveness
=========================================  =============================================

Nothing here reads the client's address or forwarding headers. Everything about one
instance (storing, reading, forgetting) needs its secret as ``Authorization: Bearer``
(401 otherwise, before anything is read from the database); an unexpected error is a
JSON 500, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from collector import dashboard, insights, offline, openapi
from collector.batcher import DEFAULT_MAX_QUEUE, Batcher
from collector.errors import CollectorError, PayloadError, StorageBusy, Unauthorized
from collector.storage import Outcome, Storage
from collector.validate import DEFAULT_LIMITS, Heartbeat, Limits, check_idempotency_key, parse
from outbox.contract import AUTHORIZATION_HEADER, secret_from_header, secret_hash

log = logging.getLogger(__name__)
access_log = logging.getLogger("collector.access")

#: Bodies larger than this are validated in a worker thread, off the event loop.
_THREAD_PARSE_BYTES: Final = 256 * 1024
RETRY_AFTER_SECONDS: Final = 5
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


NO_SECRET = (
    "send the instance secret as Authorization: Bearer <secret> (the outbox's worker and "
    "`outbox forget` do); nothing was read or stored"
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="helios-telemetry"'}


def _error(exc: CollectorError) -> JSONResponse:
    if isinstance(exc, PayloadError):
        return JSONResponse(exc.as_json(), status_code=exc.status)
    if isinstance(exc, Unauthorized):
        return JSONResponse(
            {"error": exc.message, "field": AUTHORIZATION_HEADER}, 401, headers=_CHALLENGE
        )
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
    return await receive_body(
        request.receive, None if declared is None else declared.encode("latin-1"), limit
    )


def credential(request: Request) -> str:
    """The hash of the request's instance secret; :class:`Unauthorized` when it has none."""
    header = request.headers.get("authorization")
    return _credential_of(None if header is None else header.encode("latin-1"))


HEARTBEAT_PATH: Final = "/api/instances/heartbeat"
_WANTED: Final = frozenset(
    {b"authorization", b"content-type", b"content-length", b"idempotency-key"}
)
#: What JSONResponse renders for {"status": …, "payload_sha256": …}.
_OK_BODY: Final = b'{"status":"%s","payload_sha256":"%s"}'
_FAILED: Final = JSONResponse({"error": "the collector failed; try again later"}, 500)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers the heartbeat route reads (the first of each, as Starlette)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value
    return found


def _credential_of(header: bytes | None) -> str:
    secret = secret_from_header(None if header is None else header.decode("latin-1"))
    if secret is None:
        raise Unauthorized(NO_SECRET)
    return secret_hash(secret)


def _is_json(header: bytes | None) -> bool:
    media = b"" if header is None else header.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


async def receive_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """:func:`read_body` on plain ASGI: the body, refusing (413) more than ``limit`` bytes."""
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise PayloadError(400, "Content-Length is not a number")
        if len(declared) > 18 or int(declared) > limit:
            shown = declared[:20].decode("ascii")
            raise PayloadError(413, f"the body is {shown} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # gone, or cut by the server's body deadline
            raise PayloadError(400, "the client went away before its body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
    min_instances: int = insights.DEFAULT_MIN_INSTANCES,
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
    :param min_instances: K: the public insights show a name or version only once this
        many distinct instances reported it in the window (the rest is "other").
    """
    if min_instances < 1:
        raise ValueError("min_instances must be at least 1")
    if migrate:
        storage.migrate(now=int(clock()))
    batcher = Batcher(
        storage,
        clock=clock,
        writers=writers or (1 if storage.dialect == "sqlite" else 2),
        max_items=max_batch,
        max_queue=max_queue or DEFAULT_MAX_QUEUE,
    )

    async def store(hb: Heartbeat) -> Outcome:
        outcome = await batcher.submit(hb)
        if outcome.status == "unauthorized":
            log.warning("heartbeat %s: refused, not its instance's secret", hb.heartbeat_id)
            raise Unauthorized(
                "this instance is registered with another secret: nothing was stored. "
                "Only the outbox that sent its first heartbeat can send more"
            )
        return outcome

    def conflict(hb: Heartbeat, outcome: Outcome) -> JSONResponse:
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

    async def heartbeat(scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /api/instances/heartbeat``, the hot path: plain ASGI, no Starlette
        request, routing or middleware (:class:`Front` sends it here)."""
        try:
            headers = _headers(scope)
            proof = _credential_of(headers.get(b"authorization"))  # defaults deny
            if not _is_json(headers.get(b"content-type")):
                raise PayloadError(415, "send the heartbeat as Content-Type: application/json")
            body = await receive_body(receive, headers.get(b"content-length"), limits.max_body)
            if len(body) > _THREAD_PARSE_BYTES:
                hb = await anyio.to_thread.run_sync(lambda: parse(body, limits=limits))
            else:
                hb = parse(body, limits=limits)
            key = headers.get(b"idempotency-key")
            check_idempotency_key(None if key is None else key.decode("latin-1"), hb)
            hb = dataclasses.replace(hb, credential=proof)
            outcome = await store(hb)
        except CollectorError as e:
            await _error(e)(scope, receive, send)
            return
        if outcome.status == "conflict":
            await conflict(hb, outcome)(scope, receive, send)
            return
        answer = _OK_BODY % (outcome.status.encode(), outcome.payload_sha256.encode())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"%d" % len(answer)),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def import_export(request: Request) -> Response:
        """An ``outbox export`` file as the body; the secret from the header or the file."""
        try:
            secret = secret_from_header(request.headers.get("authorization"))
            if request.headers.get("authorization") is not None and secret is None:
                raise Unauthorized(NO_SECRET)
            if not _is_json(_headers(request.scope).get(b"content-type")):
                raise PayloadError(415, "send the export file as Content-Type: application/json")
            data = await read_body(request, offline.max_export_bytes(limits))
            hb = await anyio.to_thread.run_sync(
                lambda: offline.read_export(data, secret=secret, limits=limits)
            )
            outcome = await store(hb)
        except CollectorError as e:
            return _error(e)
        if outcome.status == "conflict":
            return conflict(hb, outcome)
        receipt = offline.receipt(hb, outcome, now=int(clock()))
        return Response(receipt.to_bytes(), media_type="application/json")

    async def forget(request: Request) -> Response:
        try:
            iid, proof = _instance_id(request), credential(request)
            removed = await anyio.to_thread.run_sync(lambda: storage.forget(iid, credential=proof))
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
            iid, proof = _instance_id(request), credential(request)
            info = await anyio.to_thread.run_sync(lambda: storage.instance(iid, credential=proof))
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
            storage.read,
            lambda conn: insights.collect(
                conn, now=now, days=days, top=top, min_instances=min_instances
            ),
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

    async def server_error(request: Request, exc: Exception) -> Response:
        # A bug, not a client's fault: JSON and no detail (the log has the traceback).
        return _FAILED

    app = Starlette(
        exception_handlers={HTTPException: http_error, Exception: server_error},
        routes=[
            # POST is answered by ``heartbeat`` through Front; Starlette answers the rest (405).
            Route("/api/instances/heartbeat", _post_only, methods=["POST"]),
            Route("/api/instances/import", import_export, methods=["POST"]),
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
    front = Front(app, heartbeat)
    return AccessLog(front) if access_log_enabled else front


async def _post_only(request: Request) -> Response:  # pragma: no cover - Front answers POST
    raise AssertionError("POST /api/instances/heartbeat is served by Front")


class Front:
    """``POST /api/instances/heartbeat`` straight to its handler; everything else (the
    other routes, other methods on that path, lifespan) to the Starlette app.

    The heartbeat is most of the traffic: skipping Starlette's request object, router
    and middleware for it saves a fifth of the collector's CPU per heartbeat. It
    answers an unexpected error as the Starlette app does (a JSON 500, no detail).
    """

    def __init__(self, app: Starlette, heartbeat: ASGIApp) -> None:
        self.app = app
        self.heartbeat = heartbeat

    def __getattr__(self, name: str) -> Any:  # app.state etc. of the Starlette app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != HEARTBEAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.heartbeat(scope, receive, tracking)
        except Exception:
            log.exception("the heartbeat route failed unexpectedly")
            if not started:
                await _FAILED(scope, receive, send)


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
