"""The pure checks on browser input: literals in, verdicts out, no outbox."""

from __future__ import annotations

import json

import pytest

from outbox.web.validation import (
    MAX_BODY_BYTES,
    MAX_NAMES,
    Rejection,
    UIActions,
    parse_settings_update,
    parse_ui_actions,
    validate_declared,
)

DECLARED = {"bulk_edit", "export_csv", "column_sort"}


def body(actions: object) -> bytes:
    return json.dumps({"actions": actions}).encode()


def test_a_valid_body_splits_declared_and_unknown_names() -> None:
    result = parse_ui_actions(body({"bulk_edit": 2, "export_csv": 1, "table.zoom": 4}), DECLARED)
    assert result == UIActions(
        declared={"bulk_edit": 2, "export_csv": 1}, unknown={"table.zoom": 4}
    )


def test_the_limits_themselves_are_accepted() -> None:
    names = {f"action_{i}": 1000 for i in range(MAX_NAMES)}
    result = parse_ui_actions(body(names), names)
    assert isinstance(result, UIActions) and sum(result.declared.values()) == 50_000


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"", 422, "invalid_json"),
        (b"not json", 422, "invalid_json"),
        (b"\xff\xfe{}", 422, "invalid_json"),
        (b'{"actions": {"bulk_edit": NaN}}', 422, "invalid_json"),
        (b'{"actions": {"bulk_edit": Infinity}}', 422, "invalid_json"),
        (b"[1, 2]", 422, "invalid_body"),
        (b'"bulk_edit"', 422, "invalid_body"),
        (b"null", 422, "invalid_body"),
        (b"{}", 422, "invalid_body"),
        (b'{"actions": {}, "user": "bob@example.com"}', 422, "invalid_body"),
        (b'{"actions": ["bulk_edit"]}', 422, "invalid_actions"),
        (b'{"actions": "bulk_edit"}', 422, "invalid_actions"),
        (b'{"actions": {}}', 422, "invalid_actions"),
        (b'{"actions": {"bulk_edit": 1, "bulk_edit": 2}}', 422, "duplicate_key"),
        (b'{"actions": {"bulk_edit": 0}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": -5}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": 1001}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": 99999999999999999999999999}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": 1.0}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": 1e3}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": true}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": "2"}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": null}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": {"count": 2}}}', 422, "invalid_count"),
        (b'{"actions": {"bulk_edit": [2]}}', 422, "invalid_count"),
        (b'{"actions": {"bob@example.com": 1}}', 422, "invalid_name"),
        (b'{"actions": {"Bulk_Edit": 1}}', 422, "invalid_name"),
        (b'{"actions": {"10.0.0.1": 1}}', 422, "invalid_name"),
        (b'{"actions": {"": 1}}', 422, "invalid_name"),
        (b'{"actions": {"users/42": 1}}', 422, "invalid_name"),
        ('{"actions": {"bülk": 1}}'.encode(), 422, "invalid_name"),
    ],
)
def test_hostile_bodies_are_rejected(raw: bytes, status: int, error: str) -> None:
    result = parse_ui_actions(raw, DECLARED)
    assert isinstance(result, Rejection), result
    assert (result.status, result.error) == (status, error)
    assert result.detail


def test_one_bad_entry_is_dropped_and_the_rest_kept() -> None:
    result = parse_ui_actions(body({"bulk_edit": 2, "export_csv": 1.5}), DECLARED)
    assert result == UIActions(declared={"bulk_edit": 2}, unknown={}, invalid=1)


def test_every_invalid_entry_is_counted_once_and_the_valid_ones_are_kept() -> None:
    result = parse_ui_actions(
        body({"bulk_edit": 1, "bob@example.com": 5, "x-y": 2, "ok_name": 3, "column_sort": 0}),
        DECLARED,
    )
    assert result == UIActions(declared={"bulk_edit": 1}, unknown={"ok_name": 3}, invalid=3)


def test_a_body_with_no_usable_entry_is_refused_and_every_entry_counted() -> None:
    result = parse_ui_actions(body({"bob@example.com": 1, "x-y": 2, "bulk_edit": 0}), DECLARED)
    assert isinstance(result, Rejection)
    assert (result.status, result.error, result.invalid_names, result.dropped) == (
        422,
        "invalid_name",
        3,
        3,
    )
    assert result.detail.startswith("no entry can be used: 3 invalid; the first: name 1 of 3")
    assert "bob" not in result.detail and "example" not in result.detail


def test_too_many_names() -> None:
    result = parse_ui_actions(body({f"a{i}": 1 for i in range(MAX_NAMES + 1)}), DECLARED)
    assert isinstance(result, Rejection) and (result.status, result.error) == (
        422,
        "too_many_names",
    )


def test_an_oversized_body_is_413() -> None:
    result = parse_ui_actions(b" " * (MAX_BODY_BYTES + 1), DECLARED)
    assert isinstance(result, Rejection) and (result.status, result.error) == (413, "too_large")


def test_deep_nesting_is_rejected_not_crashing() -> None:
    deep = b'{"actions": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert isinstance(parse_ui_actions(deep, DECLARED), Rejection)
    nested = b'{"actions": {"bulk_edit": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}}"
    assert isinstance(parse_ui_actions(nested, DECLARED), Rejection)


def test_a_very_long_integer_is_never_converted() -> None:
    raw = b'{"actions": {"bulk_edit": ' + b"9" * 6000 + b"}}"
    result = parse_ui_actions(raw, DECLARED)
    assert isinstance(result, Rejection) and result.error == "invalid_count"
    assert "9999" not in result.detail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b'{"enabled": true}', True), (b'{"enabled": false}', False)],
)
def test_settings_bodies(raw: bytes, expected: bool) -> None:
    assert parse_settings_update(raw) is expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"enabled": 1}',
        b'{"enabled": "true"}',
        b'{"enabled": null}',
        b'{"enabled": true, "also": 1}',
        b"{}",
        b"true",
        b"nope",
        b" " * 2000,
    ],
)
def test_bad_settings_bodies(raw: bytes) -> None:
    assert isinstance(parse_settings_update(raw), Rejection)


def test_declared_names_are_checked_when_the_routes_are_built() -> None:
    assert validate_declared(["bulk_edit", "table.sort"]) == {"bulk_edit", "table.sort"}
    with pytest.raises(ValueError, match="'Bulk Edit' breaks the naming rules"):
        validate_declared(["bulk_edit", "Bulk Edit"])
