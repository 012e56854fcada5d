"""Who may call the telemetry routes: the host app's ``authorize`` hook.

The routes ask ``authorize(request, action)`` before doing anything, with one of
the :data:`ACTIONS`; a false answer is a 403. The hook may be a plain function
or a coroutine function. The default, :func:`same_origin`, refuses requests
that a browser made on behalf of another site. It does not know who is signed
in: a Helios deployment passes a hook that also checks, for ``"admin"``, that
the user is an administrator::

    def authorize(request, action):
        if not same_origin(request, action):
            return False
        return action != "admin" or request.user.is_admin
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Literal
from urllib.parse import urlsplit

from starlette.requests import Request

Action = Literal["ui_actions", "read_settings", "admin"]

#: ``ui_actions``: POST UI-action counts; ``read_settings``: GET the settings,
#: the privacy page and the help text; ``admin``: PUT (turn sharing on or off).
ACTIONS: Final[tuple[Action, ...]] = ("ui_actions", "read_settings", "admin")

Authorize = Callable[[Request, str], bool | Awaitable[bool]]

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_host(url: str) -> str | None:
    """``https://helios.example:8443/x`` → ``helios.example:8443`` (None when not a URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


def same_origin(request: Request, action: str) -> bool:
    """Allow a request only when the browser says it came from this site.

    Evidence is read in order of reliability: ``Sec-Fetch-Site`` (sent by every
    current browser), else ``Origin``, else ``Referer``, each compared with the
    ``Host`` the request was sent to. The scheme is not compared, so that a TLS
    proxy in front of Helios needs no configuration; the proxy must pass the
    browser's ``Host`` on (nginx: ``proxy_set_header Host $http_host``).

    A request with none of the three headers is not from a browser page (curl,
    a script on the server): it may read but not write.
    """
    headers = request.headers
    site = headers.get("sec-fetch-site")
    if site is not None:
        # "none": the user opened the URL themselves (address bar, bookmark).
        return site == "same-origin" or (site == "none" and request.method in _SAFE_METHODS)
    host = (headers.get("host") or "").lower()
    for header in ("origin", "referer"):
        value = headers.get(header)
        if value is not None:
            return bool(host) and _origin_host(value) == host
    return request.method in _SAFE_METHODS
