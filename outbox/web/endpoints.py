"""What the telemetry routes answer, framework-neutral: an adapter only translates.

=====================================  ==========================================
``POST /api/telemetry/ui-actions``     counts from the browser (``telemetry.js``)
``GET  /api/settings/telemetry``       the state, what decided it, what is collected
``PUT  /api/settings/telemetry``       ``{"enabled": true|false}`` (administrators)
``GET  /settings/privacy``             the privacy settings page
``GET  /api/telemetry/help``           help-widget text as JSON
``GET  /telemetry/help``               help-widget text as an HTML fragment
``GET  /telemetry/static/{name}``      ``telemetry.js``, ``privacy.js``, ``telemetry.css``
=====================================  ==========================================

An adapter (``outbox.web.starlette``; Flask and Django the same way) serves each
:class:`Spec` of :meth:`TelemetryEndpoints.specs` in these steps, and only
translates requests and :class:`Reply` objects:

1. ``reply = endpoints.check(spec, method, headers)``: the origin check (pure);
2. if ``spec.action``: ask the host's ``authorize`` hook, then
   ``endpoints.grant(spec, granted)`` (``granted`` None when there is no hook);
3. if ``spec.body_limit``: ``endpoints.gate(spec, headers)`` (I/O: 204 while
   telemetry is off, before the body is read; the declared type and length), then
   read at most ``spec.body_limit`` bytes (None when there are more);
4. ``endpoints.respond(spec, body, base=..., viewer=...)`` (I/O), having asked the
   hook for ``admin`` too when ``spec.asks_admin``.

Steps 3 and 4 touch the outbox: an async adapter runs them in a worker thread,
never on the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

from outbox.errors import OutboxError
from outbox.web import validation
from outbox.web.authorize import REFUSALS, Headers, Reason, declared_hosts, origin_problem
from outbox.web.help import help_html, help_json
from outbox.web.page import CONTENT_SECURITY_POLICY, Csrf, Paths, WhatIsSent, privacy_page
from outbox.web.validation import Rejection, UIActions
from outbox.web.view import Links, Viewer, settings_view, update_view

if TYPE_CHECKING:
    from outbox.client import Telemetry
    from outbox.config import Decision

log = logging.getLogger("outbox.web")

STATIC_FILES: Final[dict[str, str]] = {
    "telemetry.js": "text/javascript; charset=utf-8",
    "privacy.js": "text/javascript; charset=utf-8",
    "telemetry.css": "text/css; charset=utf-8",
}

_NO_STORE: Final = {"Cache-Control": "no-store"}
_JSON: Final = "application/json"
_HTML: Final = "text/html; charset=utf-8"

Name = Literal[
    "ui_actions", "settings", "settings_update", "privacy_page", "help_json", "help_html", "static"
]


@dataclass(frozen=True)
class Reply:
    """A response in neutral form: status, body bytes, headers (``Content-Type`` included)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, doc: Mapping[str, Any], **headers: str) -> Reply:
        body = json.dumps(doc, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": _JSON, **_NO_STORE, **headers})

    @classmethod
    def html(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": _HTML, **_NO_STORE, **headers})


def _error(status: int, error: str, detail: str, **extra: Any) -> Reply:
    return Reply.json(status, {"error": error, "detail": detail, **extra})


def _refused(reason: Reason, detail: str | None = None) -> Reply:
    return _error(403, "forbidden", detail or REFUSALS[reason], reason=reason)


def _rejected(r: Rejection) -> Reply:
    return Reply.json(r.status, r.as_json())


@dataclass(frozen=True)
class Spec:
    """One route: its name, method and path (``{name}`` for the static file), the hook
    action asked first, whether it writes, and the largest body it reads."""

    name: Name
    method: str
    path: str
    action: str | None
    write: bool = False
    body_limit: int = 0
    #: Also ask the hook for ``admin`` (to show administrators what they may see and do).
    asks_admin: bool = False


class TelemetryEndpoints:
    """The routes' behaviour around one :class:`~outbox.Telemetry`; see the module docstring.

    :param telemetry: where to count and what decides the state.
    :param hook: whether the host app passed an ``authorize`` hook (without one,
        ``admin`` is refused: the settings endpoint is read-only).
    :param ui_actions: the declared UI action names.
    :param links: the privacy policy and insights URLs.
    :param paths: where the routes are served.
    :param origins: the app's origins (``https://helios.example``); the ``Host`` of
        every request must be one of them. None: any ``Host`` for reads and UI
        actions, a loopback one for the settings write.
    """

    def __init__(
        self,
        *,
        telemetry: Telemetry,
        hook: bool,
        ui_actions: Iterable[str] = (),
        links: Links | None = None,
        paths: Paths | None = None,
        origins: Iterable[str] | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.hook = hook
        self.ui_actions = validation.validate_declared(ui_actions)
        self.links = links or Links()
        self.paths = paths or Paths()
        self.hosts = None if origins is None else declared_hosts(origins)
        package = resources.files("outbox.web").joinpath("static")
        self.static_files = {name: package.joinpath(name).read_bytes() for name in STATIC_FILES}
        if not hook:
            log.warning(
                "telemetry: no authorize hook was given, so the settings endpoint is read-only: "
                "nobody can turn sharing on or off from the app until a hook grants 'admin' "
                "to administrators (authorize=... where the telemetry routes are added: "
                "telemetry_routes, init_app, or the AUTHORIZE of HELIOS_TELEMETRY)"
            )
        elif self.hosts is None:
            log.warning(
                "telemetry: no origins were declared, so sharing can be switched only through "
                "a loopback address; declare origins=['https://your-helios.example'] where the "
                "telemetry routes are added (telemetry_routes, init_app, or the ORIGINS of "
                "HELIOS_TELEMETRY)"
            )

    def specs(self) -> list[Spec]:
        p = self.paths
        return [
            Spec(
                "ui_actions",
                "POST",
                p.ui_actions,
                "ui_actions",
                write=True,
                body_limit=validation.MAX_BODY_BYTES,
            ),
            Spec("settings", "GET", p.settings, "read_settings", asks_admin=True),
            Spec(
                "settings_update",
                "PUT",
                p.settings,
                "admin",
                write=True,
                body_limit=validation.MAX_SETTINGS_BYTES,
            ),
            Spec("privacy_page", "GET", p.page, "read_settings", asks_admin=True),
            Spec("help_json", "GET", p.help_json, "read_settings"),
            Spec("help_html", "GET", p.help_html, "read_settings"),
            Spec("static", "GET", p.static + "/{name}", None),
        ]

    # -- 1. pure checks -------------------------------------------------------------------

    def check(self, spec: Spec, method: str, headers: Headers) -> Reply | None:
        """The origin check (None: go on)."""
        if spec.action is None:
            return None
        problem = origin_problem(
            method,
            headers,
            write=spec.write,
            hosts=self.hosts,
            loopback_only=spec.action == "admin",
        )
        if problem is not None:
            return self._page_or_json(spec, _refused("cross_site", problem))
        return None

    def _page_or_json(self, spec: Spec, reply: Reply) -> Reply:
        if spec.name == "privacy_page":
            detail = json.loads(reply.body)["detail"]
            return Reply.html(reply.status, f"<!doctype html><p>Forbidden: {escape(detail)}</p>")
        if spec.name == "help_html":
            return Reply.html(reply.status, "")
        return reply

    def grant(self, spec: Spec, granted: bool | None) -> Reply | None:
        """The hook's answer for ``spec.action`` (None: no hook) → a refusal, or None to go on."""
        if spec.action is None:
            return None
        if granted is None:
            if spec.action != "admin":
                return None
            return _refused("no_hook")
        if granted:
            return None
        reason: Reason = "not_admin" if spec.action == "admin" else "denied"
        return self._page_or_json(spec, _refused(reason))

    # -- 3. before the body is read (I/O) -------------------------------------------------

    def gate(self, spec: Spec, headers: Headers) -> Reply | None:
        """Before reading a body: while telemetry is off the UI-action route answers 204
        (nothing read, nothing stored); then the declared type and length. A refused
        UI-action body counts one ``invalid_name``."""
        if spec.name == "ui_actions" and not self.telemetry.decision().collecting:
            return Reply(204, b"", _NO_STORE)
        media = validation.media_type(headers.get("content-type"))
        declared = headers.get("content-length")
        if media != "application/json":
            refusal = Rejection(
                415,
                "unsupported_media_type",
                f"send the body as application/json, not {media or 'no content type'}",
            )
        elif declared is not None and not declared.strip().isdigit():
            refusal = Rejection(400, "invalid_length", "Content-Length is not a number")
        elif declared is not None and int(declared) > spec.body_limit:
            refusal = self._too_large(spec)
        else:
            return None
        return self._refuse_body(spec, refusal)

    def _too_large(self, spec: Spec) -> Rejection:
        return Rejection(413, "too_large", f"the body is over {spec.body_limit} bytes")

    def _refuse_body(self, spec: Spec, refusal: Rejection) -> Reply:
        if spec.name == "ui_actions":
            self.telemetry.count_dropped("invalid_name", refusal.dropped)
        return _rejected(refusal)

    # -- 4. the answer (I/O) ------------------------------------------------------------------

    def respond(
        self,
        spec: Spec,
        body: bytes | None = b"",
        *,
        base: str = "",
        viewer: Viewer | None = None,
        name: str = "",
        csrf: Csrf | None = None,
    ) -> Reply:
        """The answer of ``spec`` (after the checks and the hook said yes).

        :param body: the body read, or None when it was over ``spec.body_limit`` (413).
        :param base: the mount point as the browser sees it (``root_path``), for links.
        :param viewer: who asks (:class:`~outbox.web.view.Viewer`), for the settings and page.
        :param name: the static file's name.
        :param csrf: the CSRF token the page's toggle must send (Django), if any.
        """
        viewer = viewer or Viewer(hook=self.hook)
        if body is None:
            return self._refuse_body(spec, self._too_large(spec))
        if spec.name == "ui_actions":
            return self._ui_actions(body)
        if spec.name == "settings":
            decision = self.telemetry.decision()
            doc = settings_view(
                decision, self.links, viewer=viewer, worker_warning=self._worker(decision)
            )
            return Reply.json(200, doc)
        if spec.name == "settings_update":
            return self._update(body)
        paths = self.paths.under(base)
        if spec.name == "privacy_page":
            return self._page(paths, viewer, csrf)
        if spec.name == "help_json":
            return Reply.json(200, help_json(self.links, paths.page))
        if spec.name == "help_html":
            return Reply.html(200, help_html(self.links, paths.page))
        return self._static(name)

    def _ui_actions(self, body: bytes) -> Reply:
        result = validation.parse_ui_actions(body, self.ui_actions)
        if isinstance(result, Rejection):
            self.telemetry.count_dropped("invalid_name", result.dropped)
            return _rejected(result)
        return Reply.json(202, self._store(result))

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
        if actions.invalid:
            self.telemetry.count_dropped("invalid_name", actions.invalid)
        return {
            "accepted": accepted,
            "dropped": unknown + actions.invalid + not_stored,
            "dropped_by_reason": {
                "unknown_name": unknown,
                "invalid_name": actions.invalid,
                "not_stored": not_stored,
            },
        }

    def _update(self, body: bytes) -> Reply:
        wanted = validation.parse_settings_update(body)
        if isinstance(wanted, Rejection):
            return _rejected(wanted)
        decision = self.telemetry.decision()
        if decision.locked:
            return _error(
                409,
                "locked",
                f"{decision.reason}: the environment decides, so this setting cannot be "
                f"changed here; unset {decision.source} and restart Helios",
                variable=decision.source,
            )
        try:
            decision, discarded = self.telemetry.set_enabled(wanted)
        except OutboxError as e:
            return _error(503, "storage_error", str(e))
        doc = update_view(decision, self.links, discarded, worker_warning=self._worker(decision))
        return Reply.json(200, doc)

    def _worker(self, decision: Decision) -> str | None:
        """The missing-worker message while sharing is on (the client logs it once)."""
        if not decision.sending:
            return None
        try:
            health = self.telemetry.worker()
        except OutboxError:
            return None
        return None if health is None else health.message

    def _page(self, paths: Paths, viewer: Viewer, csrf: Csrf | None = None) -> Reply:
        decision = self.telemetry.decision()
        sent = self._what_is_sent() if viewer.admin else None
        html = privacy_page(
            decision,
            self.links,
            paths,
            viewer=viewer,
            worker_warning=self._worker(decision),
            sent=sent,
            csrf=csrf,
        )
        return Reply.html(200, html, **{"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    def _what_is_sent(self) -> WhatIsSent:
        try:
            preview = self.telemetry.preview()
            last = self.telemetry.last_sent()
        except OutboxError as e:
            return WhatIsSent(problem=f"The outbox could not be read: {e}")
        return WhatIsSent(
            next_heartbeat=None if preview is None else json.dumps(preview, indent=2),
            last_sent=None if last is None else json.dumps(last.counts(), indent=2),
            last_sent_at=None if last is None else last.settled_at,
        )

    def _static(self, name: str) -> Reply:
        content = self.static_files.get(name)
        if content is None:
            return Reply(404, b"not found", {"Content-Type": "text/plain; charset=utf-8"})
        headers = {"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"}
        return Reply(200, content, headers)


def default_telemetry() -> Telemetry:
    """The :data:`outbox.telemetry` singleton (imported when first asked for)."""
    import outbox

    return outbox.telemetry


def mounted_at(template: str, spec_path: str, root: str = "") -> str:
    """Where the telemetry routes are mounted: ``root`` (the script name) and what the
    matched template has before the route's own path (a blueprint's ``url_prefix``,
    an ``include()``'s prefix)."""
    template = "/" + template.lstrip("/")
    if template.endswith(spec_path) and len(template) > len(spec_path):
        return root.rstrip("/") + template[: -len(spec_path)]
    return root.rstrip("/")
