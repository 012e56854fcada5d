"""Helios telemetry for Django: ``pip install 'helios-telemetry[django]'``.

In ``settings.py``::

    MIDDLEWARE = [
        "outbox.web.django.RouteTrackingMiddleware",  # first: it must see the final response
        # "outbox.web.django.RelayTrackingMiddleware",  # with HELIOS_TELEMETRY["RELAY_PREFIX"]
        ...,
        "django.middleware.csrf.CsrfViewMiddleware",
        ...,
    ]
    HELIOS_TELEMETRY = {
        "AUTHORIZE": "helios.telemetry.authorize",  # a function, or its dotted path
        "UI_ACTIONS": ["bulk_edit", "export_csv", "column_sort"],
        "ORIGINS": ["https://helios.example"],
    }

and in the URLconf ``path("", include("outbox.web.django.urls"))``.

API calls are counted by ``request.resolver_match.route``, the matched pattern's
template, never the path: ``path("api/users/<int:pk>/groups", ...)`` counts
``users.groups.list``. A ``re_path`` pattern counts the same way: its literal
segments are the words and every segment with regular-expression syntax is a
parameter (``^api/users/(?P<pk>[0-9]+)/$`` → ``users.get``). The telemetry's writes
(the UI-action POST, the settings PUT) are CSRF-protected the Django way: the page
and :func:`html_attributes` tell ``telemetry.js`` the header and the token.

Translation only: every decision is in :mod:`outbox.web.endpoints` and
:mod:`outbox.web.counting`; :mod:`outbox.web.wsgi` has the shared tracking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.middleware.csrf import get_token
from django.urls import get_script_prefix
from django.utils.module_loading import import_string
from django.utils.safestring import SafeString, mark_safe

from outbox.web.counting import DEFAULT_CHECK_AFTER, OWN_ROUTE_MARK, Outcome
from outbox.web.endpoints import (
    Reply,
    Spec,
    TelemetryEndpoints,
    default_telemetry,
    mounted_at,
)
from outbox.web.naming import (
    DEFAULT_RELAY_RESOURCES,
    DEFAULT_STRIP_PREFIX,
    VERBS,
    is_parameter,
    mark_of,
)
from outbox.web.page import Csrf
from outbox.web.page import html_attributes as _html_attributes
from outbox.web.tracking import DEFAULT_FLUSH_EVERY
from outbox.web.view import DEFAULT_INSIGHTS_URL, DEFAULT_PRIVACY_POLICY_URL, Links
from outbox.web.wsgi import (
    MatchedRoute,
    RelayTracking,
    RouteTracking,
    serve,
    sync_hook,
)

if TYPE_CHECKING:
    from outbox.client import Telemetry

#: The Django setting holding the options.
SETTING: Final = "HELIOS_TELEMETRY"

#: The options ``HELIOS_TELEMETRY`` may hold, with their defaults.
OPTIONS: Final[Mapping[str, Any]] = {
    "TELEMETRY": None,  # a Telemetry or its dotted path; None: outbox.telemetry
    "AUTHORIZE": None,  # authorize(request, action) -> bool, or its dotted path
    "UI_ACTIONS": (),
    "ORIGINS": None,
    "PRIVACY_POLICY_URL": DEFAULT_PRIVACY_POLICY_URL,
    "INSIGHTS_URL": DEFAULT_INSIGHTS_URL,
    "PATHS": None,  # an outbox.web.Paths
    "STRIP_PREFIX": DEFAULT_STRIP_PREFIX,
    "STRIP_VERSIONS": True,
    "RELAY_PREFIX": None,
    "RELAY_RESOURCES": DEFAULT_RELAY_RESOURCES,
    "RELAY_TEMPLATES": None,
    "CHECK_AFTER": DEFAULT_CHECK_AFTER,
    "FLUSH_EVERY": DEFAULT_FLUSH_EVERY,
    "WRITES": "thread",
}


@dataclass(frozen=True)
class Options:
    """``settings.HELIOS_TELEMETRY`` read once (again after a test changes it)."""

    values: Mapping[str, Any]

    @classmethod
    def read(cls) -> Options:
        given = getattr(settings, SETTING, {})
        if not isinstance(given, Mapping):
            raise ImproperlyConfigured(f"{SETTING} must be a dict, e.g. {{'UI_ACTIONS': [...]}}")
        unknown = sorted(set(given) - set(OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"{SETTING} has unknown keys {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
            )
        return cls({**OPTIONS, **given})

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def telemetry(self) -> Telemetry:
        value = self["TELEMETRY"]
        if value is None:
            return default_telemetry()
        return import_string(value) if isinstance(value, str) else value  # type: ignore[no-any-return]

    def authorize(self) -> Callable[[Any, str], bool] | None:
        value = self["AUTHORIZE"]
        if value is None:
            return None
        hook = import_string(value) if isinstance(value, str) else value
        from outbox.web.authorize import same_origin

        if hook is same_origin:
            raise ImproperlyConfigured(
                f"{SETTING}['AUTHORIZE'] = same_origin would let anyone on the site switch "
                "sharing: pass a hook that grants 'admin' to administrators"
            )
        return sync_hook(hook)

    def tracking(self) -> dict[str, Any]:
        return {
            "telemetry": self.telemetry(),
            "check_after": self["CHECK_AFTER"],
            "flush_every": self["FLUSH_EVERY"],
            "writes": self["WRITES"],
        }


class _State:
    """The routes' core, built from the settings on first use."""

    def __init__(self) -> None:
        options = Options.read()
        self.ask = options.authorize()
        self.endpoints = TelemetryEndpoints(
            telemetry=options.telemetry(),
            hook=self.ask is not None,
            ui_actions=options["UI_ACTIONS"],
            links=Links(options["PRIVACY_POLICY_URL"], options["INSIGHTS_URL"]),
            paths=options["PATHS"],
            origins=options["ORIGINS"],
        )


_state: _State | None = None
_state_lock = threading.Lock()


def state() -> _State:
    global _state
    with _state_lock:
        if _state is None:
            _state = _State()
        return _state


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _state
    if setting == SETTING:
        with _state_lock:
            _state = None


setting_changed.connect(_reset)


# -- counting --------------------------------------------------------------------------------


def matched_route(request: HttpRequest) -> MatchedRoute | None:
    """The route that served ``request`` (None: the resolver matched nothing)."""
    match = request.resolver_match
    if match is None:
        return None
    own = bool(getattr(match.func, OWN_ROUTE_MARK, False))
    view_class = getattr(match.func, "view_class", None)
    return MatchedRoute(
        template=match.route or None,
        own=own,
        mark=None if own else mark_of(match.func, view_class),
    )


class RouteTrackingMiddleware:
    """Count each API call of a Django app by its matched URL pattern's template.

    Put it first in ``MIDDLEWARE``: it counts by the final response's status (2xx only),
    when that response leaves it, and hands the name to a writer thread. Options from
    ``HELIOS_TELEMETRY``: ``TELEMETRY``, ``STRIP_PREFIX``, ``STRIP_VERSIONS``,
    ``CHECK_AFTER``, ``FLUSH_EVERY``, ``WRITES``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        options = Options.read()
        self.get_response = get_response
        self.tracking = RouteTracking(
            get_response,
            route=lambda environ: None,  # Django's routes are read from the request
            strip_prefix=options["STRIP_PREFIX"],
            strip_versions=options["STRIP_VERSIONS"],
            **options.tracking(),
        )

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        method = request.method or "GET"
        try:
            response = self.get_response(request)
        except BaseException:  # Django turns view errors into responses; this is the rest
            self.tracking.record(Outcome.ERROR, None)
            raise
        if method not in VERBS:
            self.tracking.record(Outcome.METHOD, None)
        else:
            route = matched_route(request)
            self.tracking.record(*self.tracking.decide(method, response.status_code, route))
        return response


class RelayTrackingMiddleware:
    """Count relayed API calls under ``HELIOS_TELEMETRY["RELAY_PREFIX"]`` by the declared
    ``RELAY_RESOURCES`` / ``RELAY_TEMPLATES`` (mark the relay view ``@not_tracked``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        options = Options.read()
        if not options["RELAY_PREFIX"]:
            raise ImproperlyConfigured(
                f"RelayTrackingMiddleware needs {SETTING}['RELAY_PREFIX'], e.g. '/api/relay'"
            )
        self.get_response = get_response
        self.tracking = RelayTracking(
            get_response,
            prefix=options["RELAY_PREFIX"],
            resources=options["RELAY_RESOURCES"],
            templates=options["RELAY_TEMPLATES"],
            **options.tracking(),
        )

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        method = request.method or "GET"
        rest = self.tracking.relay.rest(request.path_info)
        try:
            response = self.get_response(request)
        except BaseException:
            self.tracking.record(Outcome.ERROR if rest is not None else Outcome.UNMATCHED, None)
            raise
        self.tracking.record(*self.tracking.relay.decide(method, response.status_code, rest))
        return response


# -- the telemetry routes ----------------------------------------------------------------------


def csrf(request: HttpRequest) -> Csrf:
    """Where the frontend finds Django's CSRF token and which header carries it."""
    header = str(settings.CSRF_HEADER_NAME).removeprefix("HTTP_").replace("_", "-")
    readable = not settings.CSRF_USE_SESSIONS and not settings.CSRF_COOKIE_HTTPONLY
    return Csrf(
        header=header,
        token=get_token(request),
        cookie=str(settings.CSRF_COOKIE_NAME) if readable else None,
    )


def html_attributes(request: HttpRequest) -> SafeString:
    """The ``<html>`` attributes for a host page that loads ``telemetry.js``: the state, the
    routes and the CSRF token (``<html lang="en" {{ helios_telemetry_attributes }}>``)."""
    core = state().endpoints
    decision = core.telemetry.decision()
    paths = core.paths.under(get_script_prefix())
    return mark_safe(_html_attributes(decision, core.links, paths, csrf=csrf(request)))  # noqa: S308


def _response(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, headers=dict(reply.headers))


def _base(request: HttpRequest, spec: Spec) -> str:
    match = request.resolver_match
    template = match.route if match is not None else ""
    prefix = template[: -len(spec.path.lstrip("/"))] if template.endswith(spec.path[1:]) else ""
    if any(is_parameter(s) for s in prefix.split("/")):  # include("<org>/", ...): as requested
        return request.path[: -len(spec.path)] if request.path.endswith(spec.path) else ""
    return mounted_at(template, spec.path, get_script_prefix())


def view(specs: Mapping[str, Spec]) -> Callable[..., HttpResponse]:
    """One Django view serving the specs of one path, by method."""

    def endpoint(request: HttpRequest, name: str = "") -> HttpResponse:
        method = request.method or "GET"
        spec = specs.get("GET" if method == "HEAD" else method)
        if spec is None:
            return HttpResponseNotAllowed(sorted(specs))
        current = state()
        reply = serve(
            current.endpoints,
            spec,
            request=request,
            method=method,
            headers=request.headers,
            ask=current.ask,
            read=request.read,
            base=lambda: _base(request, spec),
            name=name,
            csrf=lambda: csrf(request),
        )
        return _response(reply)

    setattr(endpoint, OWN_ROUTE_MARK, True)
    return endpoint
