"""The wire contract (DESIGN.md sections 2 and 4): what a heartbeat is, shared by both ends.

Everything the sender (outbox, worker) and the receiver (collector) must agree on
lives here and nowhere else: the kinds and their payload keys, the name rules,
the drop reasons, heartbeat statuses, the payload schema version, time and day
helpers, the frozen encoding, the credential header, and the two files of the
offline round trip (an exported heartbeat and the collector's receipt).

This module imports nothing else of ``outbox``: ``import outbox.contract`` costs
the standard library only, which is all the collector loads of this package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

# -- kinds and payload keys ----------------------------------------------------------

Kind = Literal["api", "command", "ui"]
KINDS: Final[tuple[Kind, ...]] = ("api", "command", "ui")

#: The payload key that carries each kind's counts.
PAYLOAD_KEYS: Final[dict[Kind, str]] = {
    "api": "api_usage",
    "command": "command_usage",
    "ui": "ui_actions",
}

#: The ``schema_version`` of the payload (not of any database).
PAYLOAD_SCHEMA_VERSION: Final = 1

#: Top-level keys of a schema-1 payload, in the order they are written.
PAYLOAD_FIELDS: Final[tuple[str, ...]] = (
    "schema_version",
    "heartbeat_id",
    "instance_id",
    "sequence",
    "period_start",
    "period_end",
    "app",
    *PAYLOAD_KEYS.values(),
    "days",
    "dropped",
)

# -- drops and statuses ----------------------------------------------------------------

DropReason = Literal["invalid_name", "storage_error", "over_capacity", "unknown_name"]
#: Every reason an event can be counted instead of stored.
DROP_REASONS: Final[tuple[DropReason, ...]] = (
    "invalid_name",
    "storage_error",
    "over_capacity",
    "unknown_name",
)
#: Reasons always present in a payload's ``dropped``; the others appear when non-zero.
CONTRACT_DROP_REASONS: Final[tuple[DropReason, ...]] = (
    "invalid_name",
    "storage_error",
    "over_capacity",
)

Status = Literal["pending", "sent", "rejected", "local"]
#: ``pending`` (sealed, not delivered), then ``sent`` (2xx), ``rejected`` (a 4xx: kept,
#: never retried) or ``local`` (sealed in local mode: never sent).
STATUSES: Final[tuple[Status, ...]] = ("pending", "sent", "rejected", "local")

# -- names -------------------------------------------------------------------------------

MAX_NAME_LENGTH: Final = 64

#: Largest count one track call may add.
MAX_COUNT: Final = 1_000_000

#: Distinct names per kind in one heartbeat; the rest is counted as ``over_capacity``.
NAME_CAP: Final = 200

#: Last segments that make a dotted name look like a hostname (``db01.example.com``).
HOST_SUFFIXES: Final = frozenset(
    "com net org io dev app cloud local localdomain localhost internal intranet lan home "
    "corp example test invalid arpa edu gov mil int info biz co uk de fr nl eu us ca au jp "
    "cn ru br ch se es it pl at be dk fi ie nz za kr tw sg hk".split()
)

#: A segment that is a hex id (8+ hex digits, at least one a digit), also after ``_``.
_HEX_ID = r"(?=[0-9a-f]{8,}(?:[._]|$))[a-f]*[0-9]"
_NAME_SEGMENT = rf"(?!{_HEX_ID})[a-z](?:[a-z0-9]|_(?!{_HEX_ID}))*"
#: Nor may a hex id hide inside a segment: 16 or more hex characters in a row, a digit among them.
_HEX_RUN = r"(?=[0-9a-f]{16})[a-f]*[0-9]"
#: The name rule as a regular expression (the OpenAPI document publishes it).
NAME_PATTERN: Final = (
    rf"(?!.*\.(?:{'|'.join(sorted(HOST_SUFFIXES))})$)(?!.*?{_HEX_RUN})"
    rf"{_NAME_SEGMENT}(?:\.{_NAME_SEGMENT})*"
)
_NAME_RE = re.compile(NAME_PATTERN)

#: The rule in words, for error messages.
NAME_RULES: Final = (
    "lowercase segments joined by '.', each a letter followed by letters, digits or '_', "
    f"at most {MAX_NAME_LENGTH} characters, no hex id and no hostname ending (.com, .local, ...)"
)

# Names already found valid: the rules (a few µs) run once per distinct name. Bounded:
# past the cap names are checked every time, so a flood of distinct names cannot grow it.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_CAP: Final = 20_000


def is_valid_name(name: object) -> bool:
    """True when ``name`` may be recorded as it is (a ``str`` obeying the name rules)."""
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


# -- versions --------------------------------------------------------------------------------

_N = r"(?:0|[1-9][0-9]*)"
#: PEP 440 in its normalized form, local label included: "1.4.2", "2.0rc1", "1.5.post1",
#: "1.6.dev3", "1!2.0", "0+unknown" (what an outbox installed from a bare checkout says).
PEP440_PATTERN: Final = (
    rf"(?:[1-9][0-9]*!)?{_N}(?:\.{_N})*(?:(?:a|b|rc){_N})?(?:\.post{_N})?(?:\.dev{_N})?"
    r"(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?"
)
_SEMVER_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
#: Semantic Versioning 2.0.0: "2.0.0-rc.1", "1.4.2+build.7".
SEMVER_PATTERN: Final = (
    rf"{_N}\.{_N}\.{_N}(?:-{_SEMVER_ID}(?:\.{_SEMVER_ID})*)?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)
VERSION_PATTERN: Final = f"(?:{PEP440_PATTERN})|(?:{SEMVER_PATTERN})"
MAX_VERSION_LENGTH: Final = 64
_VERSION_RE = re.compile(VERSION_PATTERN)


def is_valid_version(version: object) -> bool:
    """True for a PEP 440 or semver version of at most 64 characters (``app.version``)."""
    return (
        type(version) is str
        and len(version) <= MAX_VERSION_LENGTH
        and _VERSION_RE.fullmatch(version) is not None
    )


# -- time ----------------------------------------------------------------------------------


def iso_utc(ts: float) -> str:
    """Unix seconds → ``2026-11-25T10:00:00Z``."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_of(ts: int) -> date:
    """The UTC day of a unix timestamp (what ``at / 86400`` groups by in SQL)."""
    return datetime.fromtimestamp(ts - ts % 86400, UTC).date()


# -- encoding ------------------------------------------------------------------------------


def encode(payload: dict[str, Any]) -> bytes:
    """The wire form: compact JSON, ASCII only, key order as built."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# -- the instance credential ---------------------------------------------------------------

#: ``Authorization: Bearer <secret>``: the instance secret, never in the body.
AUTHORIZATION_HEADER: Final = "Authorization"
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")


def bearer(secret: str) -> str:
    """The ``Authorization`` header value for an instance secret."""
    return f"Bearer {secret}"


def secret_from_header(value: str | None) -> str | None:
    """The secret in an ``Authorization: Bearer …`` header, or None when absent or malformed."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or _SECRET_RE.fullmatch(token) is None:
        return None
    return token


def secret_hash(secret: str) -> str:
    """What a receiver stores instead of the secret (the secret is random, 256 bits)."""
    return hashlib.sha256(b"helios-telemetry-instance-secret:" + secret.encode()).hexdigest()


# -- offline sites: an exported heartbeat and its receipt ----------------------------------

EXPORT_FORMAT: Final = "helios-telemetry-heartbeat"
RECEIPT_FORMAT: Final = "helios-telemetry-receipt"
FILE_VERSION: Final = 1


class ContractError(ValueError):
    """A file of the offline round trip is not what it claims to be (the message says why)."""


@dataclass(frozen=True)
class Export:
    """One sealed heartbeat written to a file by ``outbox export``.

    ``payload`` is the frozen bytes exactly as the worker would POST them; the file
    carries them base64-encoded (and decoded, for reading) so that nothing can
    re-encode them on the way. ``secret`` is the instance credential the collector
    asks for, as the ``Authorization`` header would carry it.
    """

    heartbeat_id: str
    instance_id: str
    sequence: int
    payload: bytes
    payload_sha256: str
    secret: str | None

    def to_bytes(self) -> bytes:
        doc = {
            "format": EXPORT_FORMAT,
            "version": FILE_VERSION,
            "heartbeat_id": self.heartbeat_id,
            "instance_id": self.instance_id,
            "sequence": self.sequence,
            "payload_sha256": self.payload_sha256,
            "payload_base64": base64.b64encode(self.payload).decode("ascii"),
            "payload": json.loads(self.payload),
            "authorization": None if self.secret is None else bearer(self.secret),
        }
        return json.dumps(doc, indent=2).encode("ascii") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Export:
        """Read an export file; :class:`ContractError` when it is not one or was altered."""
        doc = _document(data, EXPORT_FORMAT, "an exported heartbeat (outbox export)")
        try:
            payload = base64.b64decode(str(doc["payload_base64"]), validate=True)
        except (KeyError, ValueError) as e:
            raise ContractError("payload_base64 is missing or not base64") from e
        digest = sha256_hex(payload)
        if doc.get("payload_sha256") != digest:
            raise ContractError(
                "payload_sha256 does not match the payload: the file was altered or damaged"
            )
        auth = doc.get("authorization")
        secret = secret_from_header(auth) if isinstance(auth, str) else None
        return cls(
            heartbeat_id=_text(doc, "heartbeat_id"),
            instance_id=_text(doc, "instance_id"),
            sequence=_integer(doc, "sequence"),
            payload=payload,
            payload_sha256=digest,
            secret=secret,
        )


ReceiptStatus = Literal["accepted", "duplicate"]


@dataclass(frozen=True)
class Receipt:
    """What a collector answers for an imported heartbeat (``outbox-collector import``)."""

    heartbeat_id: str
    instance_id: str
    status: ReceiptStatus
    payload_sha256: str
    received_at: str

    def to_bytes(self) -> bytes:
        doc = {
            "format": RECEIPT_FORMAT,
            "version": FILE_VERSION,
            "heartbeat_id": self.heartbeat_id,
            "instance_id": self.instance_id,
            "status": self.status,
            "payload_sha256": self.payload_sha256,
            "received_at": self.received_at,
        }
        return json.dumps(doc).encode("ascii") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        doc = _document(data, RECEIPT_FORMAT, "a collector receipt (outbox-collector import)")
        status = doc.get("status")
        if status not in ("accepted", "duplicate"):
            raise ContractError(f"status must be accepted or duplicate, not {status!r:.40}")
        return cls(
            heartbeat_id=_text(doc, "heartbeat_id"),
            instance_id=_text(doc, "instance_id"),
            status=status,
            payload_sha256=_text(doc, "payload_sha256"),
            received_at=_text(doc, "received_at"),
        )


def _document(data: bytes, kind: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # nested too deeply
        raise ContractError(f"not {what}: the file is not JSON") from e
    if not isinstance(doc, dict) or doc.get("format") != kind:
        raise ContractError(f"not {what}: its format is not {kind!r}")
    if doc.get("version") != FILE_VERSION:
        raise ContractError(f"{what} of version {doc.get('version')!r:.20}; this one reads 1")
    return doc


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > 100:
        raise ContractError(f"{key} is missing or not a short string")
    return value


def _integer(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if type(value) is not int or value < 1:
        raise ContractError(f"{key} is missing or not a positive integer")
    return value
