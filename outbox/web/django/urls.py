"""The telemetry routes for a Django URLconf: ``path("", include("outbox.web.django.urls"))``.

Built from ``settings.HELIOS_TELEMETRY`` when Django first loads the URLconf. Every
view is CSRF-protected the Django way (the UI-action POST and the settings PUT need
the token; ``telemetry.js`` and ``privacy.js`` send it as the page tells them) and
marked as the telemetry's own, so ``RouteTrackingMiddleware`` never counts it.
"""

from __future__ import annotations

from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_protect

from outbox.web.counting import OWN_ROUTE_MARK
from outbox.web.django import state, view
from outbox.web.endpoints import Spec

app_name = "helios_telemetry"


def _patterns() -> list[URLPattern]:
    by_path: dict[str, dict[str, Spec]] = {}
    for spec in state().endpoints.specs():
        by_path.setdefault(spec.path, {})[spec.method] = spec
    patterns = []
    for route, specs in by_path.items():
        endpoint = csrf_protect(view(specs))
        setattr(endpoint, OWN_ROUTE_MARK, True)
        name = "_".join(s.name for s in specs.values())
        patterns.append(
            path(route.lstrip("/").replace("{name}", "<str:name>"), endpoint, name=name)
        )
    return patterns


urlpatterns = _patterns()
