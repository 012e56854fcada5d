"""Names by construction, as pure functions: route templates and the relay vocabulary."""

from __future__ import annotations

import pytest

from outbox.contract import is_valid_name
from outbox.web.naming import (
    DEFAULT_RELAY_RESOURCES,
    MARK,
    TemplateRules,
    Vocabulary,
    is_parameter,
    literal_word,
    mark_of,
    name_from_template,
    not_tracked,
    track_as,
)

TEMPLATES = [
    # (method, template, name)
    ("GET", "/api/users/{user_id}/groups", "users.groups.list"),
    ("GET", "/api/users/by-name/{username}", "users.by_name.get"),
    ("GET", "/api/users", "users.list"),
    ("GET", "/api/users/", "users.list"),  # a trailing slash changes nothing
    ("GET", "/api/users/{user_id}", "users.get"),
    ("GET", "/api/users/{user_id:int}", "users.get"),  # Starlette converters
    ("GET", "/api/files/{path:path}", "files.get"),
    ("GET", "/api/users/{user_id:uuid}/sessions/{sid}", "users.sessions.get"),
    ("POST", "/api/users", "users.create"),
    ("POST", "/api/users/{user_id}/groups", "users.groups.create"),
    ("PUT", "/api/users/{user_id}", "users.update"),
    ("PATCH", "/api/users/{user_id}", "users.update"),
    ("DELETE", "/api/users/{user_id}", "users.delete"),
    ("GET", "/api/v1/users", "users.list"),  # a literal version after the prefix goes
    ("GET", "/api/v2beta/users", "users.list"),
    ("GET", "/api/v1.0/users", "users.list"),
    ("GET", "/api/{version}/users", "users.list"),  # a version that is a parameter is one
    ("GET", "/v1/users", "users.list"),  # no prefix: the version still goes
    ("GET", "/admin/users", "admin.users.list"),  # only the configured prefix is stripped
    ("GET", "/apis/users", "apis.users.list"),  # a prefix is whole segments
    ("GET", "/api/users/{id}/audit-log", "users.audit_log.list"),
    ("GET", "/api/auditLogs/signIns", "audit_logs.sign_ins.list"),
    ("GET", "/api/users/{id}/v2", "users.v2.list"),  # a version elsewhere is a word
    ("GET", "/openapi.json", "openapi_json.list"),
    ("GET", "/api/report-{year}.csv", None),  # a parameter inside a segment: a parameter
    ("GET", "/api/users/<int:user_id>", "users.get"),  # Flask and Django style
    ("GET", "^api/users/(?P<pk>[0-9]+)/$", "users.get"),  # Django re_path
    ("GET", "^api/users/$", "users.list"),
    ("GET", "/", None),
    ("GET", "/{slug}", None),
    ("GET", "/api", None),
    ("GET", "/api/2fa", None),  # not a word: left out
    ("HEAD", "/api/users", None),
    ("OPTIONS", "/api/users", None),
    ("TRACE", "/api/users", None),
    ("get", "/api/users", None),  # ASGI methods are upper case; anything else is not ours
]


@pytest.mark.parametrize(("method", "template", "name"), TEMPLATES)
def test_template_to_name(method: str, template: str, name: str | None) -> None:
    assert name_from_template(method, template) == name


def test_the_prefix_and_versions_are_configurable() -> None:
    keep = TemplateRules(strip_prefix="", strip_versions=False)
    assert name_from_template("GET", "/api/v1/users", keep) == "api.v1.users.list"
    other = TemplateRules(strip_prefix="/rest/internal")
    assert name_from_template("GET", "/rest/internal/v3/users", other) == "users.list"
    with pytest.raises(ValueError, match="use a literal path"):
        TemplateRules(strip_prefix="/{tenant}")
    with pytest.raises(ValueError, match="use a literal path"):
        TemplateRules(strip_prefix="api")


def test_deep_templates_keep_their_most_specific_end() -> None:
    deep = "/" + "/".join(f"segment_{c}/{{p{c}}}" for c in "abcdefghijklmnopqrstuvwxyz")
    name = name_from_template("GET", deep)
    assert name is not None and is_valid_name(name) and len(name) <= 64
    assert name.endswith("segment_z.get")


@pytest.mark.parametrize(
    ("segment", "parameter"),
    [("{id}", True), ("{id:int}", True), ("<pk>", True), ("user-{id}", True), ("users", False)],
)
def test_parameters_are_recognised(segment: str, parameter: bool) -> None:
    assert is_parameter(segment) is parameter


@pytest.mark.parametrize(
    ("segment", "word"),
    [("by-name", "by_name"), ("memberOf", "member_of"), ("Users", "users"), ("~", None)],
)
def test_literal_words(segment: str, word: str | None) -> None:
    assert literal_word(segment) == word


def test_a_route_names_itself_or_opts_out() -> None:
    @track_as("users.me.get")
    def me() -> None: ...

    @not_tracked
    def health() -> None: ...

    assert getattr(me, MARK) == "users.me.get" and getattr(health, MARK) is False
    assert mark_of(me) == "users.me.get" and mark_of(health) is False
    assert mark_of(object()) is None
    assert mark_of(None, me) == "users.me.get"  # the endpoint first, then the route
    with pytest.raises(ValueError, match="'users/me' breaks the naming rules"):
        track_as("users/me")


VOCABULARY = Vocabulary.build(DEFAULT_RELAY_RESOURCES)

RELAYED = [
    ("GET", "/users", "users.list"),
    ("GET", "/users/", "users.list"),
    ("GET", "/users/jdoe", "users.get"),
    ("GET", "/users/jdoe/groups", "users.groups.list"),
    ("GET", "/Users/jdoe", "users.get"),  # SCIM capitalises
    ("GET", "/users/jdoe/memberOf", "users.member_of.list"),  # Graph camelCase
    ("GET", "/v1.0/users/jdoe", "users.get"),  # a leading version is skipped
    ("GET", "/v1/groups/eng/members/a.lovelace", "groups.members.get"),
    ("GET", "/groups/eng/members/a.lovelace/groups", "groups.members.get"),  # not declared deeper
    ("POST", "/groups/eng/members", "groups.members.create"),
    ("DELETE", "/roles/admin/assignments/x", "roles.assignments.delete"),
    ("GET", "/audit-logs/sign-ins", "audit_logs.sign_ins.list"),
    ("GET", "/orgunits/Engineering/Backend", "orgunits.get"),
    ("GET", "/users/users", "users.get"),  # "users" is no child of users: a parameter
    ("GET", "/hosts/db01", None),
    ("GET", "/jdoe/users", None),  # the first segment must be a declared resource
    ("GET", "/.git/config", None),
    ("GET", "/", None),
    ("GET", "", None),
    ("GET", "/v1", None),
    ("HEAD", "/users", None),
    ("OPTIONS", "/users", None),
]


@pytest.mark.parametrize(("method", "path", "name"), RELAYED)
def test_relayed_path_to_name(method: str, path: str, name: str | None) -> None:
    assert VOCABULARY.name(method, path) == name


def test_every_default_resource_is_a_valid_name_and_reachable() -> None:
    for resource in DEFAULT_RELAY_RESOURCES:
        assert is_valid_name(resource)
        path = "/" + "/".join(f"{word}/x" for word in resource.split("."))
        assert VOCABULARY.name("GET", path) == f"{resource}.get"
