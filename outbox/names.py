"""Deriving an API name from a relayed path (legacy): numbers, UUIDs, hex and emails removed.

The name rules themselves live in :mod:`outbox.contract`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from outbox.contract import MAX_NAME_LENGTH, is_valid_name

_SEGMENT = r"[a-z][a-z0-9_]*"
_SEGMENT_RE = re.compile(_SEGMENT)
_UUID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
_HEX_RE = re.compile(r"(?:0x)?[0-9a-f]{8,}")

_VERBS: Final[dict[str, tuple[str, str]]] = {
    # method: (verb for a collection path, verb for a path ending in an id)
    "GET": ("list", "get"),
    "HEAD": ("list", "get"),
    "POST": ("create", "create"),
    "PUT": ("update", "update"),
    "PATCH": ("update", "update"),
    "DELETE": ("delete", "delete"),
}


def _is_id_like(segment: str) -> bool:
    if "@" in segment or segment.isdigit():
        return True
    low = segment.lower()
    if _UUID_RE.fullmatch(low) or _HEX_RE.fullmatch(low):
        return True
    # Opaque tokens (base62 ids, hashes, slugs with numbers) carry more digits
    # than any resource name does.
    return sum(c.isdigit() for c in segment) >= 3


def api_name(method: str, path: str) -> str | None:
    """Derive the API name of a relayed request, or ``None`` when none can be made.

    ``path`` is the part after the relay prefix. Id-like segments are removed
    first; the verb comes from the method and from whether the path ends in an id::

        >>> api_name("GET", "/users")
        'users.list'
        >>> api_name("GET", "/users/42")
        'users.get'
        >>> api_name("DELETE", "/groups/0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70/members/a@b.example")
        'groups.members.delete'

    :param method: the HTTP method; methods other than GET, HEAD, POST, PUT,
        PATCH and DELETE give ``None``.
    :param path: the request path; a query string and percent-escapes are handled.
    """
    verbs = _VERBS.get(method.upper()) if isinstance(method, str) else None
    if verbs is None or not isinstance(path, str):
        return None
    raw = unquote(path.split("?", 1)[0].split("#", 1)[0])
    resources: list[str] = []
    ends_with_id = False
    for segment in raw.split("/"):
        if not segment:
            continue
        if _is_id_like(segment):
            ends_with_id = True
            continue
        candidate = segment.lower().replace("-", "_")
        if _SEGMENT_RE.fullmatch(candidate) is None:
            # "file.json", "~me", "%ff": not a resource name, maybe an id; never recorded.
            ends_with_id = True
            continue
        resources.append(candidate)
        ends_with_id = False
    if not resources:
        return None
    verb = verbs[1] if ends_with_id else verbs[0]
    parts = [*resources, verb]
    # Keep the most specific end of a deep path within the length limit.
    while len(".".join(parts)) > MAX_NAME_LENGTH and len(parts) > 2:
        parts.pop(0)
    name = ".".join(parts)
    return name if is_valid_name(name) else None
