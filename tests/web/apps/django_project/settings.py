"""The contract API on Django (served by gunicorn in the tests)."""

from __future__ import annotations

import secrets

from tests.web.apps.common import RELAY_PREFIX, RELAY_RESOURCES, options

SECRET_KEY = secrets.token_hex(32)
DEBUG = False
# Every Host reaches the app, so that the telemetry's own Host check is what the
# contract tests (a production site lists its names; Django answers others 400).
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.web.apps.django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "outbox.web.django.RouteTrackingMiddleware",
    "outbox.web.django.RelayTrackingMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
USE_TZ = True
_options = options()
HELIOS_TELEMETRY = {
    "AUTHORIZE": _options["authorize"],
    "UI_ACTIONS": _options["ui_actions"],
    "ORIGINS": _options["origins"],
    "RELAY_PREFIX": RELAY_PREFIX,
    "RELAY_RESOURCES": RELAY_RESOURCES,
}
LOGGING_CONFIG = None
