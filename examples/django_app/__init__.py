"""The Helios-like example app on Django, wired with ``outbox.web.django``.

* ``settings.py``: ``RouteTrackingMiddleware`` (API calls by their URL pattern) and
  ``RelayTrackingMiddleware`` (relayed calls under ``/api/relay`` by the declared
  directory vocabulary) first in ``MIDDLEWARE``, the options in ``HELIOS_TELEMETRY``;
* ``urls.py``: ``include("outbox.web.django.urls")`` (UI actions, settings, privacy
  page, help, ``telemetry.js``; CSRF-protected), a routed API, the relay, the commands;
* ``views.py``: an administrator and a normal user who sign in (``admin`` /
  ``admin-password``, ``user`` / ``user-password``; signed-cookie sessions, no
  database), the ``authorize`` hook, a dashboard whose buttons call ``trackUIAction()``.

Run it (from the repository root)::

    pip install 'helios-telemetry[django]' gunicorn
    export DJANGO_SETTINGS_MODULE=examples.django_app.settings
    export HELIOS_EXAMPLE_SECRET=$(openssl rand -hex 32)  # one session key for every worker
    HELIOS_TELEMETRY_DB=/tmp/helios-django.db python -m django runserver 8000
    HELIOS_TELEMETRY_DB=/tmp/helios-django.db gunicorn -w 4 examples.django_app.wsgi

then open http://127.0.0.1:8000/, sign in as ``admin`` and open /settings/privacy.
"""
