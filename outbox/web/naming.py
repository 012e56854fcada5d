"""API names by construction: only words a developer wrote down become a name.

No text of a request ever becomes a name. A name is built from one of two
sources, both written by the host app's developers:

* **Route templates** (routed apps: ``RouteTracking``; the Flask and Django
  adapters): the literal segments of the template the router matched, never the
  path that was requested. ``GET /api/users/{user_id}/groups`` → ``users.groups.list``,
  ``GET /api/users/by-name/{username}`` → ``users.by_name.get``
  (:func:`name_from_template`).
* **A declared vocabulary** (relays: ``RelayTracking``, a proxy with no route per
  upstream path): the resource words the host declares (``users``, ``groups``,
  ``groups.members``, ...), and optionally explicit templates
  (``{"GET /users/{id}": "users.get"}``). Every other segment of the relayed path
  is a parameter; a path whose first segment is no declared resource matches
  nothing and has no name (:class:`Vocabulary`).

The verb comes from the method and from whether the template (or relayed path)
ends in a parameter: ``GET`` → ``list`` / ``get``, ``POST`` → ``create``,
``PUT``/``PATCH`` → ``update``, ``DELETE`` → ``delete``. Other methods (``HEAD``,
``OPTIONS``, ...) have no name and are not counted.

A route may also name itself or opt out: :func:`track_as` and :func:`not_tracked`
mark the endpoint function (or any route object) with :data:`MARK`.

Pure: no framework, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from outbox.contract import MAX_NAME_LENGTH, NAME_RULES, is_valid_name

#: method → (verb for a collection, verb when the template ends in a parameter).
VERBS: Final[Mapping[str, tuple[str, str]]] = {
    "GET": ("list", "get"),
    "POST": ("create", "create"),
    "PUT": ("update", "update"),
    "PATCH": ("update", "update"),
    "DELETE": ("delete", "delete"),
}

#: The attribute :func:`track_as` and :func:`not_tracked` set on an endpoint or a route:
#: a name (``str``) or ``False`` (never counted).
MARK: Final = "helios_telemetry_name"

#: Default prefix stripped from route templates (only when it is literal there).
DEFAULT_STRIP_PREFIX: Final = "/api"

_WORD = re.compile(r"[a-z][a-z0-9_]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
#: A literal version segment: v1, v2, v1.0, v1_1, v2beta, v1alpha2.
_VERSION = re.compile(r"v[0-9]+(?:[._][0-9]+)*(?:(?:alpha|beta|rc)[0-9]*)?")
#: Characters that make a template segment a parameter (Starlette ``{x}``, Flask and
#: Django ``<x>``, regular expressions of Django's ``re_path``).
_PARAMETER_MARKS = re.compile(r"[{}<>()\[\]*?+^$\\|:]")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

F = TypeVar("F")


# -- route templates ----------------------------------------------------------------------


def _segments(template: str) -> list[str]:
    return [s for s in template.split("/") if s]


def is_parameter(segment: str) -> bool:
    """True for a template segment that is (or contains) a parameter: ``{id}``,
    ``{id:int}``, ``<int:pk>``, ``user-{id}``, ``(?P<pk>[0-9]+)``."""
    return _PARAMETER_MARKS.search(segment) is not None


def literal_word(segment: str) -> str | None:
    """A literal template segment as a name word, or None when it cannot be one.

    Developer-written text only: ``by-name`` → ``by_name``, ``memberOf`` →
    ``member_of``, ``openapi.json`` → ``openapi_json``; ``2fa`` or ``~`` give None
    (left out of the name).
    """
    word = _NOT_ALNUM.sub("_", _CAMEL.sub("_", segment).lower()).strip("_")
    return word if _WORD.fullmatch(word) else None


@dataclass(frozen=True)
class TemplateRules:
    """How route templates become names.

    :param strip_prefix: a leading literal prefix left out of every name
        (``"/api"``: ``/api/users`` → ``users.list``); ``""`` keeps everything.
    :param strip_versions: leave out literal version segments right after it
        (``/api/v2/users`` → ``users.list``); a version that is a parameter is a
        parameter like any other.
    """

    strip_prefix: str = DEFAULT_STRIP_PREFIX
    strip_versions: bool = True

    def __post_init__(self) -> None:
        prefix = self.strip_prefix
        if prefix and (not prefix.startswith("/") or any(map(is_parameter, _segments(prefix)))):
            raise ValueError(
                f"strip_prefix={self.strip_prefix!r}: use a literal path such as '/api', or ''"
            )


def _join(words: list[str], verb: str) -> str | None:
    parts = [*words, verb]
    # Keep the most specific end of a deep template within the length limit.
    while len(".".join(parts)) > MAX_NAME_LENGTH and len(parts) > 2:
        parts.pop(0)
    name = ".".join(parts)
    return name if is_valid_name(name) else None


@functools.lru_cache(maxsize=4096)
def name_from_template(
    method: str, template: str, rules: TemplateRules = TemplateRules()
) -> str | None:
    """The API name of a request that matched ``template``, or None (no name: not counted).

    ::

        >>> name_from_template("GET", "/api/users/{user_id}/groups")
        'users.groups.list'
        >>> name_from_template("GET", "/api/users/by-name/{username}")
        'users.by_name.get'
        >>> name_from_template("DELETE", "/api/v1/orgs/{org}/members/{user:int}")
        'orgs.members.delete'
        >>> name_from_template("HEAD", "/api/users") is None
        True

    Only the template's literal segments are used, so the same route gives the same
    name whatever was requested. Cached: the arguments come from the app's routes
    and the method is one of :data:`VERBS`, so the cache is bounded by the app.
    """
    verbs = VERBS.get(method)
    if verbs is None:
        return None
    # Django's re_path anchors: ^api/users/(?P<pk>[0-9]+)/$
    segments = _segments(template.removeprefix("^").removesuffix("$"))
    prefix = _segments(rules.strip_prefix)
    if prefix and segments[: len(prefix)] == prefix:
        segments = segments[len(prefix) :]
    if rules.strip_versions:
        while segments and _VERSION.fullmatch(segments[0]):
            segments = segments[1:]
    words: list[str] = []
    ends_in_parameter = False
    for segment in segments:
        if is_parameter(segment):
            ends_in_parameter = True
            continue
        ends_in_parameter = False
        word = literal_word(segment)
        if word is not None:
            words.append(word)
    if not words:
        return None
    return _join(words, verbs[1] if ends_in_parameter else verbs[0])


# -- a route's own name, or none ---------------------------------------------------------


def check_name(name: str) -> str:
    """``name`` if it may be recorded; else :class:`ValueError` with the rules."""
    if not is_valid_name(name):
        raise ValueError(f"telemetry name {name!r} breaks the naming rules ({NAME_RULES})")
    return name


def track_as(name: str) -> Callable[[F], F]:
    """Give a route's endpoint its own API name instead of the one made from its template::

        @app.get("/api/users/me")
        @track_as("users.me.get")
        def me() -> User: ...

    The function is returned unchanged (only :data:`MARK` is set on it).

    :raises ValueError: at decoration time, when ``name`` breaks the naming rules.
    """
    check_name(name)

    def mark(endpoint: F) -> F:
        setattr(endpoint, MARK, name)
        return endpoint

    return mark


def not_tracked(endpoint: F) -> F:
    """Never count requests to this endpoint (health checks, pages, the relay route that
    ``RelayTracking`` already counts)."""
    setattr(endpoint, MARK, False)
    return endpoint


def mark_of(*objects: object) -> str | bool | None:
    """The first :data:`MARK` found on ``objects`` (endpoint, route): a name, False
    (not counted) or None (no mark: use the template)."""
    for obj in objects:
        value = getattr(obj, MARK, None)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None


# -- relays: a declared vocabulary ----------------------------------------------------------

#: Resource paths of the directory APIs the Helios relay fronts (Google Workspace Admin
#: SDK, Microsoft Graph, Okta, SCIM 2.0), as ``parent.child``. Extend it for your
#: upstream: ``resources=[*DEFAULT_RELAY_RESOURCES, "widgets"]``.
DEFAULT_RELAY_RESOURCES: Final[tuple[str, ...]] = (
    # people
    "users",
    "users.aliases",
    "users.photos",
    "users.groups",
    "users.roles",
    "users.devices",
    "users.licenses",
    "users.manager",
    "users.direct_reports",
    "users.member_of",
    "users.factors",
    "users.tokens",
    "users.sessions",
    "users.password",
    "me",
    "me.member_of",
    "contacts",
    "invitations",
    # groups and membership
    "groups",
    "groups.members",
    "groups.owners",
    "groups.aliases",
    "groups.settings",
    "groups.member_of",
    "groups.users",
    "members",
    # roles
    "roles",
    "roles.assignments",
    "roles.members",
    "role_assignments",
    "role_definitions",
    "directory_roles",
    "directory_roles.members",
    "privileges",
    # devices
    "devices",
    "devices.owners",
    "mobile_devices",
    "chromeos_devices",
    "chromeosdevices",
    "mobiledevices",
    # organisation
    "orgunits",
    "org_units",
    "organizational_units",
    "domains",
    "domains.aliases",
    "domain_aliases",
    "aliases",
    "customers",
    "schemas",
    "resources",
    "resources.calendars",
    "resources.buildings",
    "resource_types",
    "service_provider_config",
    "applications",
    "service_principals",
    "apps",
    "policies",
    # licences
    "licenses",
    "license_assignments",
    "subscribed_skus",
    "subscriptions",
    # audit
    "audit",
    "audit.events",
    "audit_logs",
    "audit_logs.sign_ins",
    "audit_logs.directory_audits",
    "activities",
    "logs",
    "events",
    "reports",
)


def segment_key(segment: str) -> str | None:
    """How a relayed path segment is compared with the declared words: ASCII only,
    ``-`` and camelCase to ``_``, lowercase (``Users`` / ``memberOf`` / ``audit-logs``
    → ``users`` / ``member_of`` / ``audit_logs``). Anything else (non-ASCII, digits
    first, dots) can only be a parameter. Only ever compared, never stored."""
    if not segment.isascii():
        return None
    key = _CAMEL.sub("_", segment).lower().replace("-", "_")
    return key if _WORD.fullmatch(key) else None


@dataclass(frozen=True)
class _Template:
    method: str
    parts: tuple[str | None, ...]  # a word, or None for one parameter segment
    rest: bool  # ends in a {name:path} parameter: one or more further segments
    name: str

    def matches(self, method: str, keys: Sequence[str | None]) -> bool:
        if method != self.method:
            return False
        n = len(self.parts)
        if len(keys) < n or (len(keys) > n and not self.rest) or (self.rest and len(keys) == n):
            return False
        return all(p is None or p == k for p, k in zip(self.parts, keys, strict=False))


def _compile_template(key: str, name: str) -> _Template:
    method, _, path = key.strip().partition(" ")
    method = method.upper()
    if method not in VERBS or not path.strip().startswith("/"):
        raise ValueError(
            f"relay template {key!r}: write 'METHOD /path/{{param}}' with METHOD one of "
            f"{', '.join(VERBS)}"
        )
    check_name(name)
    parts: list[str | None] = []
    rest = False
    segments = _segments(path.strip())
    for i, segment in enumerate(segments):
        if is_parameter(segment):
            if segment.endswith(":path}") and i == len(segments) - 1:
                rest = True
            else:
                parts.append(None)
            continue
        word = segment_key(segment)
        if word is None:
            raise ValueError(f"relay template {key!r}: {segment!r} is not a word or a {{param}}")
        parts.append(word)
    return _Template(method, tuple(parts), rest, name)


@dataclass(frozen=True)
class Vocabulary:
    """The words a relayed path may be named with, and explicit templates.

    ::

        >>> v = Vocabulary.build(["users", "groups", "groups.members"])
        >>> v.name("GET", "/groups/eng-team/members")
        'groups.members.list'
        >>> v.name("GET", "/users/jdoe")
        'users.get'
        >>> v.name("GET", "/hosts/db01") is None      # nothing declared matches
        True

    The first segment must be a declared top-level resource (literal version
    segments such as ``v1`` before it are skipped); after that, a segment is a word
    only when it is declared under the resource before it, and a parameter
    otherwise. Templates are tried first, in the order given.
    """

    tree: Mapping[str, Any] = field(default_factory=dict)
    templates: tuple[_Template, ...] = ()

    @classmethod
    def build(
        cls, resources: Iterable[str] = (), templates: Mapping[str, str] | None = None
    ) -> Vocabulary:
        """:raises ValueError: for a resource or template that cannot be used, naming it."""
        if isinstance(resources, str):
            raise ValueError("resources= takes a list of names, e.g. ['users', 'groups.members']")
        tree: dict[str, Any] = {}
        for resource in resources:
            if not isinstance(resource, str) or not is_valid_name(resource):
                raise ValueError(
                    f"relay resource {resource!r} breaks the naming rules ({NAME_RULES}); "
                    "declare words such as 'users' or 'groups.members'"
                )
            node = tree
            for word in resource.split("."):
                node = node.setdefault(word, {})
        compiled = tuple(_compile_template(k, v) for k, v in (templates or {}).items())
        if not tree and not compiled:
            raise ValueError("a relay needs resources=[...] or templates={...} to name requests")
        return cls(tree, compiled)

    def name(self, method: str, path: str) -> str | None:
        """The API name of a relayed request (``path`` after the relay prefix), or None."""
        verbs = VERBS.get(method)
        if verbs is None:
            return None
        segments = [s for s in path.split("/") if s]
        keys = [segment_key(s) for s in segments]
        for template in self.templates:
            if template.matches(method, keys):
                return template.name
        node: Mapping[str, Any] = self.tree
        words: list[str] = []
        ends_in_parameter = False
        for segment, key in zip(segments, keys, strict=True):
            child = node.get(key) if key is not None else None
            if key is not None and child is not None:
                words.append(key)
                node = child
                ends_in_parameter = False
            elif words:
                ends_in_parameter = True
            elif not _VERSION.fullmatch(segment):
                return None  # the first segment is no declared resource
        if not words:
            return None
        return _join(words, verbs[1] if ends_in_parameter else verbs[0])
