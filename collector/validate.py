"""Strict validation of a heartbeat body, schema version 1 (DESIGN.md section 2): pure.

:func:`parse` turns the raw request body into a :class:`Heartbeat` or raises
:class:`~collector.errors.PayloadError` naming the offending field:

* 400 — not UTF-8 JSON, not an object, a duplicated key, or a ``schema_version``
  other than the integer 1 (a body this collector cannot even read);
* 422 — schema version 1, but a field breaks the contract: wrong type, an id that
  is not a UUID, a name that breaks the name rules, a version that is neither PEP 440
  nor semver, a count that is not an integer ≥ 1 (``true`` is not an integer) or is
  beyond what a real instance can count (:class:`Limits`), a top-level map that is
  not the sum of ``days``, or a size limit.

The size of the body itself (413) is checked by the web layer before parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from collector.errors import PayloadError
from outbox.contract import (
    CONTRACT_DROP_REASONS,
    KINDS,
    MAX_NAME_LENGTH,
    MAX_VERSION_LENGTH,
    NAME_PATTERN,
    PAYLOAD_FIELDS,
    PAYLOAD_KEYS,
    PAYLOAD_SCHEMA_VERSION,
    Kind,
    is_valid_name,
    is_valid_version,
    sha256_hex,
)

EDITIONS: Final = ("community", "licensed")
#: Largest top-level count: the largest integer every JSON reader keeps exactly (the
#: top-level maps must also equal the sums of ``days``, whose counts are bounded lower).
MAX_COUNT: Final = 2**53 - 1
#: One count of one (UTC day, kind, name) in one heartbeat: 11,574 events a second on
#: that one name, around the clock. See :class:`Limits`.
MAX_DAY_COUNT: Final = 10**9
#: All counts of one UTC day in one heartbeat: 115,740 events a second all day long.
MAX_DAY_TOTAL: Final = 10**10
#: One ``dropped`` reason in one heartbeat.
MAX_DROPPED: Final = 10**12
#: A sequence number: one seal a second for 68 years. Bounded so that no sum of the
#: "missing" numbers derived from it can leave 64 bits.
MAX_SEQUENCE: Final = 2**31 - 1

UUID_PATTERN: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIME_PATTERN: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)"
)
DAY_PATTERN: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
REASON_PATTERN: Final = r"[a-z][a-z0-9_]*"
#: What bodies stored before versions were checked may hold (re-reading them only).
LEGACY_VERSION_PATTERN: Final = r"[!-~](?:[ -~]*[!-~])?"

_UUID_RE = re.compile(UUID_PATTERN)
_TIME_RE = re.compile(TIME_PATTERN)
_DAY_RE = re.compile(DAY_PATTERN)
_REASON_RE = re.compile(REASON_PATTERN)
_LEGACY_VERSION_RE = re.compile(LEGACY_VERSION_PATTERN)

TOP_KEYS: Final = PAYLOAD_FIELDS
_KIND_OF_KEY: Final[dict[str, Kind]] = {key: kind for kind, key in PAYLOAD_KEYS.items()}

#: Longest piece of client input echoed back in a ``field``.
_ECHO = 80


@dataclass(frozen=True)
class Limits:
    """Size limits and count bounds. The outbox keeps at most 200 names per kind and
    ~50,000 day rows per heartbeat, so the size defaults leave a wide margin.

    The count bounds are what no real instance reaches: each event is one API call,
    command or UI action of one self-hosted Helios, recorded by one committed SQLite
    INSERT. ``max_day_count`` (10⁹) is 11,574 events a second on a single name for a
    whole day; ``max_day_total`` (10¹⁰) is 115,740 a second on all names, more than
    one outbox file commits. A heartbeat is thus worth at most 10¹⁰ per day it covers,
    and one (day, kind, name) total grows by at most 10⁹ per accepted heartbeat:
    leaving 64 bits would take 9.2 billion of them.
    """

    max_body: int = 8 * 1024 * 1024
    max_names_per_kind: int = 2_000
    max_days: int = 3_660
    max_day_rows: int = 250_000
    max_drop_reasons: int = 32
    max_day_count: int = MAX_DAY_COUNT
    max_day_total: int = MAX_DAY_TOTAL
    max_dropped: int = MAX_DROPPED
    max_sequence: int = MAX_SEQUENCE
    #: Versions must be PEP 440 or semver (off only to re-read old bodies).
    strict_versions: bool = True


DEFAULT_LIMITS: Final = Limits()
#: For re-reading bodies that were accepted before (the limits may have changed since).
NO_LIMITS: Final = Limits(
    *(2**62,) * 5,
    max_day_count=2**62,
    max_day_total=2**126,
    max_dropped=2**126,
    max_sequence=2**63 - 1,
    strict_versions=False,
)


#: One count of one (UTC day ``YYYY-MM-DD``, kind, name): a plain tuple, made tens
#: of times per heartbeat.
Row = tuple[str, Kind, str, int]


@dataclass(frozen=True)
class Heartbeat:
    """A valid heartbeat, as the storage needs it."""

    heartbeat_id: str
    instance_id: str
    sequence: int
    period_start: int  # unix seconds
    period_end: int
    version: str
    edition: str
    rows: tuple[Row, ...]  # from ``days``; (day, kind, name) unique
    dropped: Mapping[str, int]
    payload_sha256: str
    body: bytes  # exactly as received
    #: ``outbox.contract.secret_hash`` of the secret it came with; "" = none (refused).
    credential: str = ""
    #: (kind, name, first day, last day) of every name in ``rows``: made while parsing,
    #: so that the writer does not walk the rows again (``records.name_spans``).
    spans: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def size(self) -> int:
        return len(self.body)


def _echo(key: str) -> str:
    return key if len(key) <= _ECHO else key[:_ECHO] + "…"


def _path(*parts: str) -> str:
    return ".".join(_echo(p) for p in parts)


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _invalid(field: str, message: str) -> PayloadError:
    return PayloadError(422, f"{field}: {message}", field)


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(_echo(key))
            seen.add(key)
    return out


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    """The decoded body, or a 400 :class:`PayloadError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(400, f"the body is not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_reject_constant)
    except _DuplicateKey as e:
        raise PayloadError(400, f"the body repeats the key {str(e)!r} in one object") from None
    except RecursionError:
        raise PayloadError(400, "the body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, 5,000-digit integers
        raise PayloadError(400, f"the body is not JSON: {e}") from None


def _object(value: object, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _invalid(field, f"must be an object, not {_type_name(value)}")
    return value


def _exact_keys(obj: Mapping[str, Any], keys: tuple[str, ...], prefix: str | None) -> None:
    def where(key: str) -> str:
        return _path(prefix, key) if prefix else _path(key)

    for key in keys:
        if key not in obj:
            raise _invalid(where(key), "is missing")
    for key in obj:
        if key not in keys:
            raise _invalid(where(key), "is not a field of schema version 1")


def _uuid(value: object, field: str) -> str:
    if type(value) is not str or _UUID_RE.fullmatch(value) is None:
        raise _invalid(field, "must be a UUID in lowercase hyphenated form")
    return value


def _int(value: object, field: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise _invalid(field, f"must be an integer, not {_type_name(value)}")
    if not low <= value <= high:
        raise _invalid(field, f"must be between {low} and {high}")
    return value


def _time(value: object, field: str) -> int:
    if type(value) is not str or _TIME_RE.fullmatch(value) is None:
        raise _invalid(field, "must be an ISO 8601 UTC time such as 2026-11-25T10:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(field, "is not a real date and time") from None
    return int(moment.astimezone(UTC).timestamp())


def _day(key: str) -> str:
    if _DAY_RE.fullmatch(key) is None:
        raise _invalid(_path("days", key), "day keys must be UTC dates such as 2026-11-25")
    try:
        date.fromisoformat(key)
    except ValueError:
        raise _invalid(_path("days", key), "is not a real date") from None
    return key


def _counts(value: object, field: str, limits: Limits, high: int = MAX_COUNT) -> dict[str, int]:
    counts = _object(value, field)
    if len(counts) > limits.max_names_per_kind:
        raise _invalid(field, f"has more than {limits.max_names_per_kind} names")
    for name, count in counts.items():
        # The hot path of a large heartbeat: field paths are only built for an error.
        if not is_valid_name(name):
            raise _invalid(
                _path(field, name),
                f"name must be lowercase segments joined by '.', each a letter followed by "
                f"letters, digits or '_', at most {MAX_NAME_LENGTH} characters, and not end "
                "like a hostname (.com, .local, ...)",
            )
        if type(count) is not int or not 1 <= count <= high:
            _int(count, _path(field, name), 1, high)
    return counts


def _dropped(value: object, limits: Limits) -> dict[str, int]:
    dropped = _object(value, "dropped")
    if len(dropped) > limits.max_drop_reasons:
        raise _invalid("dropped", f"has more than {limits.max_drop_reasons} reasons")
    for required in CONTRACT_DROP_REASONS:
        if required not in dropped:
            raise _invalid(_path("dropped", required), "is missing")
    for reason, count in dropped.items():
        where = _path("dropped", reason)
        if len(reason) > MAX_NAME_LENGTH or _REASON_RE.fullmatch(reason) is None:
            raise _invalid(where, "reasons must be lowercase identifiers")
        _int(count, where, 0, limits.max_dropped)
    return dropped


def _app(value: object, limits: Limits) -> tuple[str, str]:
    app = _object(value, "app")
    _exact_keys(app, ("version", "edition"), "app")
    version = app["version"]
    if not (
        is_valid_version(version)
        if limits.strict_versions
        else type(version) is str
        and len(version) <= MAX_VERSION_LENGTH
        and _LEGACY_VERSION_RE.fullmatch(version) is not None
    ):
        raise _invalid(
            "app.version",
            f"must be a PEP 440 or semver version (1.4.2, 2.0.0-rc.1, 1.5.post1), "
            f"at most {MAX_VERSION_LENGTH} characters",
        )
    edition = app["edition"]
    if edition not in EDITIONS or type(edition) is not str:
        raise _invalid("app.edition", "must be 'community' or 'licensed'")
    return version, edition


def _days(
    value: object, limits: Limits
) -> tuple[list[Row], dict[Kind, dict[str, int]], dict[tuple[str, str], list[str]]]:
    days = _object(value, "days")
    if len(days) > limits.max_days:
        raise _invalid("days", f"has more than {limits.max_days} days")
    rows: list[Row] = []
    sums: dict[Kind, dict[str, int]] = {kind: {} for kind in KINDS}
    spans: dict[tuple[str, str], list[str]] = {}
    day_keys = tuple(PAYLOAD_KEYS.values())
    for key, per_day in days.items():
        day = _day(key)
        where = f"days.{key}"  # key is a checked date: nothing to shorten
        per_day = _object(per_day, where)
        _exact_keys(per_day, day_keys, where)
        day_total = 0
        for payload_key, counts in per_day.items():
            kind = _KIND_OF_KEY[payload_key]
            checked = _counts(counts, f"{where}.{payload_key}", limits, limits.max_day_count)
            total = sums[kind]
            for name, count in checked.items():
                rows.append((day, kind, name, count))
                total[name] = total.get(name, 0) + count
                day_total += count
                span = spans.get((kind, name))
                if span is None:
                    spans[(kind, name)] = [day, day]
                elif day < span[0]:
                    span[0] = day
                elif day > span[1]:
                    span[1] = day
        if day_total > limits.max_day_total:
            raise _invalid(
                where,
                f"counts {day_total} events in one day; a heartbeat may count at most "
                f"{limits.max_day_total} a day",
            )
        if len(rows) > limits.max_day_rows:
            raise _invalid("days", f"has more than {limits.max_day_rows} counts in all")
    return rows, sums, spans


def parse(body: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Heartbeat:
    """Validate a heartbeat body (schema version 1) and return what the storage needs.

    :raises PayloadError: 400 for a body that is not a JSON object of schema
        version 1, 422 naming the field for every other breach of the contract.
    """
    doc = load_json(body)
    if type(doc) is not dict:
        raise PayloadError(400, f"the body must be a JSON object, not {_type_name(doc)}")
    version = doc.get("schema_version")
    if type(version) is not int or version != PAYLOAD_SCHEMA_VERSION:
        shown = "missing" if "schema_version" not in doc else json.dumps(version)[:_ECHO]
        raise PayloadError(
            400,
            f"schema_version must be {PAYLOAD_SCHEMA_VERSION}, got {shown}: "
            "this collector reads schema version 1 only",
            "schema_version",
        )
    _exact_keys(doc, TOP_KEYS, None)
    heartbeat_id = _uuid(doc["heartbeat_id"], "heartbeat_id")
    instance_id = _uuid(doc["instance_id"], "instance_id")
    sequence = _int(doc["sequence"], "sequence", 1, limits.max_sequence)
    period_start = _time(doc["period_start"], "period_start")
    period_end = _time(doc["period_end"], "period_end")
    app_version, edition = _app(doc["app"], limits)
    top = {kind: _counts(doc[PAYLOAD_KEYS[kind]], PAYLOAD_KEYS[kind], limits) for kind in KINDS}
    rows, sums, spans = _days(doc["days"], limits)
    for kind in KINDS:
        if top[kind] != sums[kind]:
            key = PAYLOAD_KEYS[kind]
            for name in sorted(top[kind].keys() | sums[kind].keys()):
                said, summed = top[kind].get(name, 0), sums[kind].get(name, 0)
                if said != summed:
                    raise _invalid(
                        _path(key, name),
                        f"is {said} but the days add up to {summed}: "
                        "the top-level maps must be the sums of days",
                    )
    dropped = _dropped(doc["dropped"], limits)
    return Heartbeat(
        heartbeat_id=heartbeat_id,
        instance_id=instance_id,
        sequence=sequence,
        period_start=period_start,
        period_end=period_end,
        version=app_version,
        edition=edition,
        rows=tuple(rows),
        dropped=dropped,
        payload_sha256=sha256_hex(body),
        body=body,
        spans=tuple(sorted((kind, name, f, la) for (kind, name), (f, la) in spans.items())),
    )


def check_idempotency_key(header: str | None, heartbeat: Heartbeat) -> None:
    """The ``Idempotency-Key`` header, when sent, must be the body's ``heartbeat_id``."""
    if header is not None and header.strip() != heartbeat.heartbeat_id:
        raise PayloadError(
            422, "the Idempotency-Key header must equal heartbeat_id", "Idempotency-Key"
        )


#: The regular expression the OpenAPI document gives for names.
NAME_REGEX: Final = f"^{NAME_PATTERN}$"
