"""Settings (DESIGN.md sections 2 and 3): the environment, read once into a frozen object.

:func:`decide` is the whole on/off rule, a pure function; the outbox feeds it the
organisation setting stored in ``organization_settings``. First match wins:

1. ``DO_NOT_TRACK=1`` or ``HELIOS_TELEMETRY_ENABLED`` false → off, locked.
2. The organisation's choice (``outbox enable|disable``, the settings page).
3. ``HELIOS_TELEMETRY_ENABLED`` true → on; ``local`` → collect, never send;
   unset → off.

When the organisation has chosen "on" and the environment says ``local``, the
mode is ``local``: the environment's promise never to send still holds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from outbox.errors import SettingsError

Mode = Literal["on", "local", "off"]
Source = Literal["DO_NOT_TRACK", "HELIOS_TELEMETRY_ENABLED", "organization_setting", "default"]
EnvChoice = Literal["true", "false", "local"] | None
Edition = Literal["community", "licensed"]

DEFAULT_ENDPOINT: Final = "https://helios.gridworx.io/api/instances/heartbeat"
ORG_SETTING_KEY: Final = "telemetry_enabled"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def default_db_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/helios/telemetry.db``, else ``~/.local/share/helios/telemetry.db``."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "helios" / "telemetry.db"


def parse_enabled(value: str | None) -> EnvChoice:
    """Read ``HELIOS_TELEMETRY_ENABLED``: true/false (1/0, yes/no, on/off) or ``local``."""
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return "true"
    if v in _FALSE:
        return "false"
    if v == "local":
        return "local"
    raise SettingsError(
        f"HELIOS_TELEMETRY_ENABLED={value!r} is not understood; "
        "use true, false or local (or leave it unset: telemetry stays off)"
    )


def parse_do_not_track(value: str | None) -> bool:
    """``DO_NOT_TRACK``: any value other than empty, 0 or false forces telemetry off."""
    return value is not None and value.strip().lower() not in {"", "0", "false", "no"}


def validate_endpoint(url: str) -> str:
    """Only ``https://`` endpoints, except loopback addresses (tests and the local demo)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError(
            f"HELIOS_TELEMETRY_ENDPOINT={url!r} is not an http(s) URL; "
            f"use for example {DEFAULT_ENDPOINT}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(
            f"HELIOS_TELEMETRY_ENDPOINT={url!r} is plain http; only https:// is accepted, "
            "except for loopback addresses (127.0.0.1, ::1, localhost)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Decision:
    """The effective state and what decided it (shown by ``outbox status``)."""

    mode: Mode
    source: Source
    locked: bool
    reason: str

    @property
    def collecting(self) -> bool:
        """True when track calls write (``on`` or ``local``)."""
        return self.mode != "off"

    @property
    def sending(self) -> bool:
        """True when the worker may send (``on`` only)."""
        return self.mode == "on"


def decide(env: EnvChoice, do_not_track: bool, org: bool | None) -> Decision:
    """The rule of DESIGN.md section 3; ``org`` is the stored organisation choice."""
    if do_not_track:
        return Decision("off", "DO_NOT_TRACK", True, "DO_NOT_TRACK is set in the environment")
    if env == "false":
        return Decision(
            "off",
            "HELIOS_TELEMETRY_ENABLED",
            True,
            "HELIOS_TELEMETRY_ENABLED is false in the environment",
        )
    if org is not None:
        if not org:
            return Decision(
                "off", "organization_setting", False, "the organisation turned sharing off"
            )
        mode: Mode = "local" if env == "local" else "on"
        return Decision(
            mode,
            "organization_setting",
            False,
            "the organisation turned sharing on"
            + (" (HELIOS_TELEMETRY_ENABLED=local: never sent)" if mode == "local" else ""),
        )
    if env == "true":
        return Decision(
            "on",
            "HELIOS_TELEMETRY_ENABLED",
            False,
            "HELIOS_TELEMETRY_ENABLED is true in the environment",
        )
    if env == "local":
        return Decision(
            "local",
            "HELIOS_TELEMETRY_ENABLED",
            False,
            "HELIOS_TELEMETRY_ENABLED=local: collected and shown here, never sent",
        )
    return Decision("off", "default", False, "telemetry is off until someone turns it on")


@dataclass(frozen=True)
class Settings:
    """Everything the environment configures, validated.

    Build it with :meth:`from_env`; tests pass a dict.
    """

    db_path: Path
    enabled: EnvChoice
    do_not_track: bool
    endpoint: str
    edition: Edition
    version: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the variables of DESIGN.md section 2.

        :raises SettingsError: naming the variable and the values it accepts.
        """
        env = os.environ if environ is None else environ
        edition = (env.get("HELIOS_EDITION") or "community").strip().lower()
        if edition not in ("community", "licensed"):
            raise SettingsError(
                f"HELIOS_EDITION={env.get('HELIOS_EDITION')!r} is not understood; "
                "use community (daily heartbeat) or licensed (hourly)"
            )
        db = env.get("HELIOS_TELEMETRY_DB")
        return cls(
            db_path=Path(db).expanduser() if db else default_db_path(env),
            enabled=parse_enabled(env.get("HELIOS_TELEMETRY_ENABLED")),
            do_not_track=parse_do_not_track(env.get("DO_NOT_TRACK")),
            endpoint=validate_endpoint(env.get("HELIOS_TELEMETRY_ENDPOINT") or DEFAULT_ENDPOINT),
            edition=edition,  # type: ignore[arg-type]  # checked just above
            version=env.get("HELIOS_VERSION") or package_version(),
        )

    @property
    def locked_off(self) -> bool:
        """True when the environment forces telemetry off whatever the organisation says."""
        return self.do_not_track or self.enabled == "false"


def package_version() -> str:
    """The installed helios-telemetry version, or ``0+unknown`` from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("helios-telemetry")
    except PackageNotFoundError:
        return "0+unknown"
