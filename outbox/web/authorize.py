"""Who may call the telemetry routes: two independent layers, framework-neutral.

1. **The origin check** (:func:`origin_problem`), done by the routes themselves on
   every request: a browser request made on behalf of another site is refused,
   and so is a request for a ``Host`` that is not one of the app's declared
   origins (no DNS rebinding). A write (``POST`` UI actions, ``PUT`` settings)
   needs the browser's own evidence, ``Sec-Fetch-Site: same-origin`` or an
   ``Origin`` naming the requested host; a ``Referer`` alone is not enough.
2. **The host app's hook**, ``authorize(request, action) -> bool`` (or awaitable),
   asked with one of :data:`ACTIONS` and given the framework's own request object.
   Without a hook, reading and sending UI-action counts are allowed and ``admin`` is
   refused: the settings endpoint is read-only until a hook grants ``admin`` to
   administrators. Only an administrator turns sharing on or off.

A refusal is a 403 whose ``reason`` says which layer refused: ``cross_site``,
``no_hook``, ``not_admin`` or ``denied`` (the hook refused a read or a UI-action post).

Nothing here imports a web framework: requests are read through ``.method`` and
``.headers.get(name)``, which Starlette, Flask and Django requests all have.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

Action = Literal["ui_actions", "read_settings", "admin"]

#: ``ui_actions``: POST UI-action counts; ``read_settings``: GET the settings, the
#: privacy page and the help text; ``admin``: PUT (turn sharing on or off) and, on the
#: page, see exactly what would be sent.
ACTIONS: Final[tuple[Action, ...]] = ("ui_actions", "read_settings", "admin")

#: The host app's hook: ``authorize(request, action) -> bool`` or a coroutine function.
#: ``request`` is the framework's request (Starlette's ``Request`` for ASGI apps).
Authorize = Callable[[Any, str], bool | Awaitable[bool]]

Reason = Literal["cross_site", "no_hook", "not_admin", "denied"]

#: What each refusal says (the ``detail`` of the 403 starts with it).
REFUSALS: Final[dict[Reason, str]] = {
    "cross_site": "cross-site request",
    "no_hook": "no authorisation hook configured: the settings endpoint is read-only",
    "not_admin": "not an administrator",
    "denied": "the authorisation hook refused this request",
}

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class HasHeaders(Protocol):
    """What the origin check reads of a request (Starlette, Flask and Django have it)."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> Any: ...


def _netloc(url: str) -> str | None:
    """``https://helios.example:8443/x`` → ``helios.example:8443`` (None when not a URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return parts.netloc.lower()


def declared_hosts(origins: Iterable[str]) -> frozenset[str]:
    """The ``Host`` values that the declared origins allow: ``https://helios.example`` →
    ``helios.example`` and ``helios.example:443``.

    :raises ValueError: for an origin that is not ``http(s)://host[:port]``.
    """
    if isinstance(origins, str):
        raise ValueError("origins= takes a list, e.g. ['https://helios.example']")
    hosts: set[str] = set()
    for origin in origins:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        netloc = _netloc(origin) if isinstance(origin, str) else None
        if parts is None or netloc is None or parts.path not in ("", "/") or parts.query:
            raise ValueError(
                f"origin {origin!r}: write the scheme, host and port the browser uses, "
                "e.g. 'https://helios.example' or 'http://127.0.0.1:8000'"
            )
        hosts.add(netloc)
        if parts.port is None:
            hosts.add(f"{netloc}:{443 if parts.scheme == 'https' else 80}")
    return frozenset(hosts)


def _hostname(host: str) -> str:
    """``127.0.0.1:8000`` → ``127.0.0.1``; ``[::1]:8000`` → ``::1``."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1:8000``, ``[::1]:8000``: a host only this machine can reach."""
    name = _hostname(host.lower())
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_problem(
    method: str,
    headers: Headers,
    *,
    write: bool,
    hosts: frozenset[str] | None = None,
    loopback_only: bool = False,
) -> str | None:
    """Why a request fails the origin check (a sentence starting "cross-site request"), or None.

    :param write: the request changes something (needs the browser's evidence).
    :param hosts: the ``Host`` values allowed (:func:`declared_hosts`); None: any.
    :param loopback_only: with no declared hosts, allow only a loopback ``Host``
        (the settings write, until ``origins=`` is given).
    """
    prefix = REFUSALS["cross_site"]
    host = (headers.get("host") or "").strip().lower()
    if not host:
        return f"{prefix}: the request names no Host"
    if hosts is not None:
        if host not in hosts:
            return f"{prefix}: the Host it was sent to is not one of the app's declared origins"
    elif loopback_only and not is_loopback_host(host):
        return (
            f"{prefix}: no origins are declared, so settings can be changed only through a "
            "loopback address; declare origins=[...] where the telemetry routes are added"
        )
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if site is not None:
        if site != "same-origin" and not (site == "none" and not write):
            return f"{prefix}: the browser says it was sent by another site ({site})"
    if origin is not None and _netloc(origin) != host:
        return f"{prefix}: its Origin is not the host it was sent to"
    if write and site is None and origin is None:
        return (
            f"{prefix}: a change needs the browser's Origin or Sec-Fetch-Site header "
            "(a Referer alone is not enough)"
        )
    return None


def same_origin(request: HasHeaders, action: str) -> bool:
    """True when the request passes the origin check (as a write unless its method is
    ``GET``, ``HEAD`` or ``OPTIONS``; ``action`` is not looked at).

    The routes already apply this check themselves; host apps may reuse it for their
    own endpoints. It is **not** an authorisation hook: it cannot tell an administrator
    from anyone else, so ``telemetry_routes`` refuses it as ``authorize=``.
    """
    write = request.method not in _SAFE_METHODS
    return origin_problem(request.method, request.headers, write=write) is None


def refuse_same_origin(authorize: object) -> None:
    """:raises ValueError: when ``authorize`` is :func:`same_origin`, which would let
    anyone on the site switch sharing."""
    if authorize is same_origin:
        raise ValueError(
            "authorize=same_origin would let anyone on the site switch sharing: the routes "
            "check the origin themselves; pass a hook that grants 'admin' to administrators"
        )
