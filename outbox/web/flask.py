"""Helios telemetry for Flask: ``pip install 'helios-telemetry[flask]'``.

::

    from outbox.web.flask import init_app

    init_app(app, telemetry=t, authorize=authorize, ui_actions=["bulk_edit"])

One call wires everything: the telemetry routes as a blueprint (UI actions, settings,
the privacy page, help, the static files), API calls counted by the matched rule's
template (``request.url_rule.rule``, never the path) after each response, and, with
``relay_prefix=``, relayed calls named from the declared vocabulary. For the app-factory
pattern: ``ext = TelemetryExtension(telemetry=t, ...)``, later ``ext.init_app(app)``.
(Not named ``Telemetry``: that is :class:`outbox.Telemetry`, the outbox itself.)

Translation only: every decision is in :mod:`outbox.web.endpoints` and
:mod:`outbox.web.counting`; :mod:`outbox.web.wsgi` carries the WSGI middlewares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from flask import Blueprint, Flask, Response, current_app, request

from outbox.web.authorize import Authorize, refuse_same_origin
from outbox.web.counting import DEFAULT_CHECK_AFTER, OWN_ROUTE_MARK
from outbox.web.endpoints import (
    Reply,
    Spec,
    TelemetryEndpoints,
    default_telemetry,
    mounted_at,
)
from outbox.web.naming import DEFAULT_RELAY_RESOURCES, DEFAULT_STRIP_PREFIX, mark_of
from outbox.web.page import Paths
from outbox.web.tracking import DEFAULT_FLUSH_EVERY, Writes
from outbox.web.view import DEFAULT_INSIGHTS_URL, DEFAULT_PRIVACY_POLICY_URL, Links
from outbox.web.wsgi import (
    Environ,
    MatchedRoute,
    RelayTracking,
    RouteTracking,
    serve,
    sync_hook,
)

if TYPE_CHECKING:
    from outbox.client import Telemetry

#: Where the blueprint and the extension are registered.
NAME: Final = "helios_telemetry"
#: The environ key the request's matched route is kept under until the response is sent.
_ROUTE_KEY: Final = "helios_telemetry.route"


def _remember_route(exc: BaseException | None) -> None:
    """``teardown_request``: keep the matched rule for the count after the response."""
    rule = request.url_rule
    if rule is None:
        return
    view = current_app.view_functions.get(rule.endpoint or "")
    static = rule.endpoint == "static" or (rule.endpoint or "").endswith(".static")
    own = bool(getattr(view, OWN_ROUTE_MARK, False))
    request.environ[_ROUTE_KEY] = MatchedRoute(
        template=None if static else rule.rule,
        own=own,
        mark=None if own else mark_of(view, rule),
    )


def _route(environ: Environ) -> MatchedRoute | None:
    route = environ.get(_ROUTE_KEY)
    return route if isinstance(route, MatchedRoute) else None


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, headers=dict(reply.headers))


class TelemetryExtension:
    """The Flask extension: ``TelemetryExtension(app, ...)`` or ``init_app(app)`` later.

    :param telemetry: where to count and what decides the state (default: the
        :data:`outbox.telemetry` singleton).
    :param authorize: ``authorize(request, action) -> bool`` (a plain function; it gets
        Flask's ``request``), asked with ``"ui_actions"``, ``"read_settings"`` or
        ``"admin"``. Only True for ``"admin"`` switches sharing and shows what is sent;
        without a hook the settings endpoint is read-only.
    :param ui_actions: the UI action names the frontend may send.
    :param origins: the app's origins as browsers see them; without them, sharing
        can be switched only through a loopback address.
    :param privacy_policy_url, insights_url: linked from the page and the settings API.
    :param paths: where the routes are served (default :class:`~outbox.web.page.Paths`).
    :param url_prefix: the blueprint's prefix (the page's links follow it).
    :param track_routes: count the app's API calls by their rule's template.
    :param strip_prefix, strip_versions: as for :class:`outbox.web.RouteTracking`.
    :param relay_prefix: count relayed calls under this prefix (``/api/relay``) by the
        declared ``relay_resources`` and ``relay_templates`` (mark the relay view
        ``@not_tracked``: the relay counts it).
    :param check_after, flush_every, writes: as for :class:`outbox.web.RouteTracking`.
    :raises ValueError: for a name, origin, link, prefix or resource that cannot be
        used, ``authorize=same_origin``, or an ``async`` hook.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        telemetry: Telemetry | None = None,
        authorize: Authorize | None = None,
        ui_actions: Iterable[str] = (),
        origins: Iterable[str] | None = None,
        privacy_policy_url: str = DEFAULT_PRIVACY_POLICY_URL,
        insights_url: str = DEFAULT_INSIGHTS_URL,
        paths: Paths | None = None,
        url_prefix: str = "",
        track_routes: bool = True,
        strip_prefix: str = DEFAULT_STRIP_PREFIX,
        strip_versions: bool = True,
        relay_prefix: str | None = None,
        relay_resources: Iterable[str] = DEFAULT_RELAY_RESOURCES,
        relay_templates: Mapping[str, str] | None = None,
        check_after: int = DEFAULT_CHECK_AFTER,
        flush_every: float = DEFAULT_FLUSH_EVERY,
        writes: Writes = "thread",
    ) -> None:
        refuse_same_origin(authorize)
        self._telemetry = telemetry
        self.ask = None if authorize is None else sync_hook(authorize)
        self.ui_actions = tuple(ui_actions)
        self.origins = None if origins is None else list(origins)
        self.links = Links(privacy_policy_url, insights_url)
        self.paths = paths or Paths()
        self.url_prefix = url_prefix.rstrip("/")
        self.tracking: dict[str, Any] = {
            "check_after": check_after,
            "flush_every": flush_every,
            "writes": writes,
        }
        self.track_routes = track_routes
        self.rules: dict[str, Any] = {
            "strip_prefix": strip_prefix,
            "strip_versions": strip_versions,
        }
        self.relay: dict[str, Any] | None = None
        if relay_prefix is not None:
            self.relay = {
                "prefix": relay_prefix,
                "resources": tuple(relay_resources),
                "templates": relay_templates,
            }
        self.endpoints: TelemetryEndpoints | None = None
        if app is not None:
            self.init_app(app)

    @property
    def telemetry(self) -> Telemetry:
        if self._telemetry is None:
            self._telemetry = default_telemetry()
        return self._telemetry

    def init_app(self, app: Flask) -> None:
        """Register the routes and the tracking on ``app`` (once per app)."""
        if NAME in app.extensions:
            raise RuntimeError("helios telemetry is already set up on this Flask app")
        endpoints = TelemetryEndpoints(
            telemetry=self.telemetry,
            hook=self.ask is not None,
            ui_actions=self.ui_actions,
            links=self.links,
            paths=self.paths,
            origins=self.origins,
        )
        self.endpoints = endpoints
        app.register_blueprint(self.blueprint(endpoints), url_prefix=self.url_prefix or None)
        app.extensions[NAME] = self
        if self.track_routes:
            app.teardown_request(_remember_route)
            app.wsgi_app = RouteTracking(  # type: ignore[method-assign]
                app.wsgi_app, route=_route, telemetry=self.telemetry, **self.rules, **self.tracking
            )
        if self.relay is not None:
            app.wsgi_app = RelayTracking(  # type: ignore[method-assign]
                app.wsgi_app, telemetry=self.telemetry, **self.relay, **self.tracking
            )

    def blueprint(self, endpoints: TelemetryEndpoints) -> Blueprint:
        """The telemetry routes as a blueprint (each view marked as the telemetry's own)."""
        bp = Blueprint(NAME, __name__)
        for spec in endpoints.specs():
            view = self._view(endpoints, spec)
            setattr(view, OWN_ROUTE_MARK, True)
            rule = spec.path.replace("{name}", "<name>")
            bp.add_url_rule(rule, f"telemetry_{spec.name}", view, methods=[spec.method])
        return bp

    def _view(self, endpoints: TelemetryEndpoints, spec: Spec) -> Any:
        def view(name: str = "") -> Response:
            def base() -> str:
                rule = request.url_rule.rule if request.url_rule is not None else ""
                return mounted_at(rule, spec.path, request.script_root)

            reply = serve(
                endpoints,
                spec,
                request=request._get_current_object(),  # type: ignore[attr-defined]
                method=request.method,
                headers=request.headers,
                ask=self.ask,
                read=request.stream.read,
                base=base,
                name=name,
            )
            return _response(reply)

        view.__name__ = f"telemetry_{spec.name}"
        return view


def init_app(app: Flask, **options: Any) -> TelemetryExtension:
    """Set up Helios telemetry on a Flask app; the options are :class:`TelemetryExtension`'s.

    ``init_app(app, telemetry=t, authorize=authorize, ui_actions=["bulk_edit"],
    origins=["https://helios.example"])``.
    """
    return TelemetryExtension(app, **options)
