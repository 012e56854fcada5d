"""Settings of the Django example (see ``examples/django_app/__init__.py``)."""

from __future__ import annotations

import os
import secrets

from examples.helios_site import LINKS, RELAY_PREFIX, RELAY_RESOURCES, UI_ACTIONS

# Every worker process must sign sessions with the same key: set HELIOS_EXAMPLE_SECRET.
SECRET_KEY = os.environ.get("HELIOS_EXAMPLE_SECRET") or secrets.token_hex(32)
DEBUG = False
ALLOWED_HOSTS = os.environ.get("HELIOS_EXAMPLE_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "outbox.web.django.RouteTrackingMiddleware",  # first: it counts by the final response
    "outbox.web.django.RelayTrackingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

_origins = os.environ.get("HELIOS_EXAMPLE_ORIGINS")
HELIOS_TELEMETRY = {
    # "TELEMETRY": the outbox.telemetry singleton (HELIOS_TELEMETRY_DB) by default
    "AUTHORIZE": "examples.django_app.views.authorize",
    "UI_ACTIONS": UI_ACTIONS,
    # The origins browsers use; without them sharing is switched through loopback only.
    "ORIGINS": _origins.split(",") if _origins else None,
    "PRIVACY_POLICY_URL": LINKS.privacy_policy_url,
    "INSIGHTS_URL": LINKS.insights_url,
    "RELAY_PREFIX": RELAY_PREFIX,
    "RELAY_RESOURCES": RELAY_RESOURCES,
}
