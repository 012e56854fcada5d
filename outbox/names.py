"""Names and privacy (DESIGN.md section 4): which names may be recorded.

A name is lowercase ASCII segments joined by ``.``, each a letter followed by
letters, digits or ``_``, at most 64 characters — so an email, an IP address, a
number or a hex id can never be a name — and a dotted name may not end in a
top-level-domain-like segment (``.com``, ``.local``, ``.internal`` …), so neither
can a hostname. Anything else is dropped and counted.

:func:`api_name` derives a name from a relayed request, removing id-like path
segments (numbers, UUIDs, hex, anything with ``@``) before anything is recorded.
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import unquote

Kind = Literal["api", "command", "ui"]

KINDS: Final[tuple[Kind, ...]] = ("api", "command", "ui")

#: The payload key that carries each kind's counts (contract, schema version 1).
PAYLOAD_KEYS: Final[dict[Kind, str]] = {
    "api": "api_usage",
    "command": "command_usage",
    "ui": "ui_actions",
}

MAX_NAME_LENGTH: Final = 64

#: Largest count one track call may add (the UI-action route allows 1-1000).
MAX_COUNT: Final = 1_000_000

#: Distinct names per kind kept in one heartbeat; the rest is counted as
#: ``dropped.over_capacity`` (the least used names go first).
NAME_CAP: Final = 200

_SEGMENT = r"[a-z][a-z0-9_]*"

#: Last segments that make a dotted name look like a hostname (``db01.example.com``):
#: such names are refused, so a hostname passed by mistake never leaves the machine.
HOST_SUFFIXES: Final = frozenset(
    {
        "com",
        "net",
        "org",
        "io",
        "dev",
        "app",
        "cloud",
        "local",
        "localdomain",
        "localhost",
        "internal",
        "intranet",
        "lan",
        "home",
        "corp",
        "example",
        "test",
        "invalid",
        "arpa",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "co",
        "uk",
        "de",
        "fr",
        "nl",
        "eu",
        "us",
        "ca",
        "au",
        "jp",
        "cn",
        "ru",
        "br",
        "ch",
        "se",
        "es",
        "it",
        "pl",
        "at",
        "be",
        "dk",
        "fi",
        "ie",
        "nz",
        "za",
        "kr",
        "tw",
        "sg",
        "hk",
    }
)
#: A segment that is a hex id (8 or more hex digits, at least one of them a digit:
#: ``e31ea01ee1eedafe``, a hash or a token) starts with a letter as often as not;
#: refused like a number, so that no hex id can be a name. Words of the letters a-f
#: alone (``facade``, ``added``) stay valid.
#: The same for a part after ``_`` (``job_59d20fa90f4b``).
_HEX_ID = r"(?=[0-9a-f]{8,}(?:[._]|$))[a-f]*[0-9]"
_NAME_SEGMENT = rf"(?!{_HEX_ID})[a-z](?:[a-z0-9]|_(?!{_HEX_ID}))*"
#: Nor may a hex id hide inside a segment, glued to letters (``user4f9c0e…``, a token
#: or a dashless UUID): 16 or more hex characters in a row, a digit among them.
_HEX_RUN = r"(?=[0-9a-f]{16})[a-f]*[0-9]"
NAME_PATTERN: Final = (
    rf"(?!.*\.(?:{'|'.join(sorted(HOST_SUFFIXES))})$)(?!.*?{_HEX_RUN})"
    rf"{_NAME_SEGMENT}(?:\.{_NAME_SEGMENT})*"
)
_NAME_RE = re.compile(NAME_PATTERN)
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


#: Names already found valid, so that the rules (a regular expression with look-aheads,
#: a few µs) run once per distinct name, not on every track call or heartbeat. Bounded:
#: past the cap names are checked every time and not remembered, so a flood of distinct
#: names cannot grow it.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_CAP: Final = 20_000


def is_valid_name(name: object) -> bool:
    """True when ``name`` may be recorded as it is (a str obeying the name rules)."""
    if type(name) is not str:
        return False
    if name in _VALID_NAMES:
        return True
    if len(name) > MAX_NAME_LENGTH or _NAME_RE.fullmatch(name) is None:
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_CAP:
        _VALID_NAMES.add(name)
    return True


def is_valid_count(count: object) -> bool:
    """True for an ``int`` (not a bool) between 1 and :data:`MAX_COUNT`."""
    return type(count) is int and 1 <= count <= MAX_COUNT


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
