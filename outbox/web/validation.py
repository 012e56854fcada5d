"""Checking what a browser sends: pure functions from bytes to a verdict.

Browser input is untrusted. Nothing here touches the outbox, the network or
the clock, so the tests call it with literals.

A UI-action body looks like ``{"actions": {"bulk_edit": 2, "export_csv": 1}}``:
at most :data:`MAX_BODY_BYTES` bytes of JSON (no duplicate keys), at most
:data:`MAX_NAMES` names. A body whose *shape* is wrong is refused whole. Within a
well-formed body each entry stands alone: a declared name with an ``int`` count
from 1 to :data:`MAX_UI_COUNT` is stored; a valid name the host app did not declare
is counted as dropped ``unknown_name``; an entry whose name breaks the rules
(:func:`outbox.is_valid_name`) or whose count is bad is counted as dropped
``invalid_name``, so one bad name in a batch does not lose the good ones. A body
with no usable entry at all is refused (422), its entries counted the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from outbox.contract import is_valid_name

#: Largest UI-action body accepted, in bytes (checked on Content-Length and while reading).
MAX_BODY_BYTES: Final = 8 * 1024
#: Largest settings body accepted, in bytes.
MAX_SETTINGS_BYTES: Final = 1024
#: Distinct names one UI-action body may carry.
MAX_NAMES: Final = 50
#: Largest count of one name in one body.
MAX_UI_COUNT: Final = 1000

NAME_RULES: Final = (
    "lowercase letters, digits and _, segments joined by '.', each starting with a letter, "
    "at most 64 characters"
)


@dataclass(frozen=True)
class Rejection:
    """Why a body was refused: the HTTP status, a stable error code and a sentence.

    ``invalid_names`` is how many names broke the naming rules (counted as
    dropped ``invalid_name``); other rejections count as one.
    """

    status: int
    error: str
    detail: str
    invalid_names: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail}

    @property
    def dropped(self) -> int:
        """How many ``invalid_name`` drops this rejection is worth (at least one)."""
        return max(1, self.invalid_names)


@dataclass(frozen=True)
class UIActions:
    """A usable UI-action body: the declared names to store, the valid names the host
    app did not declare (dropped ``unknown_name``, by count) and how many entries were
    invalid (a name breaking the rules or a bad count: dropped ``invalid_name``, one each)."""

    declared: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    invalid: int = 0


class _Duplicate(ValueError):
    pass


class _BadConstant(ValueError):
    pass


class _TooManyDigits:
    """A JSON integer too long to be any count we accept (never converted)."""


_TOO_MANY_DIGITS: Final = _TooManyDigits()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _int(text: str) -> int | _TooManyDigits:
    # Python refuses to convert integers over 4300 digits (and takes quadratic time
    # below that); no count needs more than a handful.
    return int(text) if len(text.lstrip("-")) <= 9 else _TOO_MANY_DIGITS


def _constant(text: str) -> Any:
    raise _BadConstant(text)


def _parse_json(body: bytes) -> Any | Rejection:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(422, "invalid_json", "the body is not UTF-8 text")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_constant)
    except _Duplicate:
        return Rejection(422, "duplicate_key", "the body names the same key twice")
    except _BadConstant as e:
        return Rejection(422, "invalid_json", f"{e} is not allowed in JSON")
    except RecursionError:
        return Rejection(422, "invalid_json", "the body is nested too deeply")
    except ValueError as e:
        return Rejection(422, "invalid_json", f"the body is not valid JSON ({_short(e)})")


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120]


def _describe(value: object) -> str:
    """The JSON type of a value, for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | _TooManyDigits):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_ui_actions(body: bytes, declared: Iterable[str]) -> UIActions | Rejection:
    """Check a whole UI-action body; return what to store or why it is refused.

    :param body: the raw request body (the route has already enforced the size).
    :param declared: the UI action names the host app accepts.
    """
    if len(body) > MAX_BODY_BYTES:
        return Rejection(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    doc = _parse_json(body)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return Rejection(
            422,
            "invalid_body",
            f'the body must be an object {{"actions": {{...}}}}, not {_describe(doc)}',
        )
    extra = sorted(set(doc) - {"actions"})
    if extra or "actions" not in doc:
        return Rejection(
            422,
            "invalid_body",
            'the body must have exactly one key, "actions"'
            + (f" ({len(extra)} other key(s) found)" if extra else ""),
        )
    actions = doc["actions"]
    if not isinstance(actions, dict):
        return Rejection(
            422, "invalid_actions", f'"actions" must be an object, not {_describe(actions)}'
        )
    if not actions:
        return Rejection(422, "invalid_actions", '"actions" names no UI action')
    if len(actions) > MAX_NAMES:
        return Rejection(
            422,
            "too_many_names",
            f'"actions" names {len(actions)} UI actions; at most {MAX_NAMES} per request',
        )
    allowed = frozenset(declared)
    result = UIActions()
    problems: list[tuple[str, str]] = []
    for i, (name, count) in enumerate(actions.items(), 1):
        if not is_valid_name(name):
            problems.append(("invalid_name", f"name {i} of {len(actions)} breaks the naming rules"))
        elif type(count) is not int or not 1 <= count <= MAX_UI_COUNT:
            if isinstance(count, _TooManyDigits):
                what = "an integer that long"
            else:
                what = _describe(count) if type(count) is not int else f"{count}"
            problems.append(
                (
                    "invalid_count",
                    f"the count of name {i} of {len(actions)} must be an integer from 1 to "
                    f"{MAX_UI_COUNT}, not {what}",
                )
            )
        else:
            (result.declared if name in allowed else result.unknown)[name] = count
    if problems and not result.declared and not result.unknown:
        error, first = problems[0]
        rules = f" ({NAME_RULES})" if error == "invalid_name" else ""
        return Rejection(
            422,
            error,
            f"no entry can be used: {len(problems)} invalid; the first: {first}{rules}",
            invalid_names=len(problems),
        )
    return UIActions(result.declared, result.unknown, len(problems))


def parse_settings_update(body: bytes) -> bool | Rejection:
    """Check a settings body ``{"enabled": true|false}``; return the wanted state."""
    if len(body) > MAX_SETTINGS_BYTES:
        return Rejection(413, "too_large", f"the body is over {MAX_SETTINGS_BYTES} bytes")
    doc = _parse_json(body)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict) or set(doc) != {"enabled"}:
        return Rejection(
            422, "invalid_body", 'the body must be {"enabled": true} or {"enabled": false}'
        )
    value = doc["enabled"]
    if not isinstance(value, bool):
        return Rejection(
            422, "invalid_enabled", f'"enabled" must be true or false, not {_describe(value)}'
        )
    return value


def validate_declared(names: Iterable[str]) -> frozenset[str]:
    """The host app's UI action names, checked once when the routes are built.

    :raises ValueError: naming the first name that breaks the rules.
    """
    result: set[str] = set()
    for name in names:
        if not is_valid_name(name):
            raise ValueError(
                f"UI action name {name!r} breaks the naming rules ({NAME_RULES}); "
                "declare names such as 'bulk_edit' or 'table.sort'"
            )
        result.add(name)
    return frozenset(result)


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()
