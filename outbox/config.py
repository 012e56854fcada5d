"""Configuration (DESIGN.md sections 2 and 3): the environment, read once, in one place.

:meth:`Config.from_env` reads every variable into a frozen :class:`Config` and never
raises: a value it cannot use is kept as a :class:`Problem` (what is wrong and how
to fix it) next to a safe value. The library, the privacy page, the ``outbox``
command and the worker all read the environment through it and decide with
:meth:`Config.decision`, so one value gets one answer everywhere. Callers that
cannot work with a problem (the worker cannot send to an unusable endpoint) ask
:meth:`Config.require`, which raises :class:`~outbox.errors.SettingsError`.

The on/off rule, first match wins:

1. ``DO_NOT_TRACK`` set (any value but empty, ``0`` or ``false``) or
   ``HELIOS_TELEMETRY_ENABLED`` false → **off, locked**; an *explicit* opt-out
   that deletes what was not sent.
2. ``HELIOS_TELEMETRY_ENABLED`` with a value nobody understands → **off, locked**,
   reported everywhere with the fix; not an opt-out: nothing is deleted.
3. The organisation's choice stored in the outbox (off is an explicit opt-out).
4. ``HELIOS_TELEMETRY_ENABLED`` true → on; ``local`` → collect, never send;
   unset → off by default (not an opt-out: nothing is deleted).

When the organisation chose "on" and the environment says ``local``, the mode is
``local``: the environment's promise never to send still holds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from outbox.contract import is_valid_version
from outbox.errors import SettingsError

Mode = Literal["on", "local", "off"]
Source = Literal["DO_NOT_TRACK", "HELIOS_TELEMETRY_ENABLED", "organization_setting", "default"]
EnvChoice = Literal["true", "false", "local"] | None
Edition = Literal["community", "licensed"]

ENABLED: Final = "HELIOS_TELEMETRY_ENABLED"
DO_NOT_TRACK: Final = "DO_NOT_TRACK"
DB: Final = "HELIOS_TELEMETRY_DB"
ENDPOINT: Final = "HELIOS_TELEMETRY_ENDPOINT"
EDITION: Final = "HELIOS_EDITION"
VERSION: Final = "HELIOS_VERSION"
#: Every variable this package reads (tests clear them).
VARIABLES: Final = (ENABLED, DO_NOT_TRACK, DB, ENDPOINT, EDITION, VERSION, "XDG_DATA_HOME")

DEFAULT_ENDPOINT: Final = "https://helios.gridworx.io/api/instances/heartbeat"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: ``DO_NOT_TRACK`` values that do *not* ask for "off" (the console convention).
_DNT_UNSET: Final = frozenset({"", "0", "false"})


@dataclass(frozen=True)
class Problem:
    """A variable (or option) whose value cannot be used, and what to do about it."""

    variable: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The effective state, what decided it, and whether it is an explicit opt-out."""

    mode: Mode
    source: Source
    locked: bool
    reason: str
    #: An explicit "off" (``DO_NOT_TRACK``, the variable false, the organisation off):
    #: what was not sent is deleted. Off by default or by a bad value deletes nothing.
    opt_out: bool = False

    @property
    def collecting(self) -> bool:
        """True when track calls write (``on`` or ``local``)."""
        return self.mode != "off"

    @property
    def sending(self) -> bool:
        """True when the worker may send (``on`` only)."""
        return self.mode == "on"


def parse_enabled(value: str | None) -> EnvChoice | Problem:
    """``HELIOS_TELEMETRY_ENABLED``: true/false (1/0, yes/no, on/off), ``local``, or unset."""
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return "true"
    if v in _FALSE:
        return "false"
    if v == "local":
        return "local"
    return Problem(
        ENABLED,
        f"{ENABLED}={value[:40]!r} is not understood, so telemetry is off; "
        "use true, false or local (or unset it)",
    )


def parse_do_not_track(value: str | None) -> bool:
    """``DO_NOT_TRACK``: any value other than empty, ``0`` or ``false`` forces telemetry off."""
    return value is not None and value.strip().lower() not in _DNT_UNSET


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, label: str = ENDPOINT) -> str | Problem:
    """Only ``https://`` endpoints, except loopback addresses (tests and the local demo).

    :param label: how the user gave it (the variable, or ``--endpoint``), for the message.
    """
    shown = f"{label}={url!r}" if label == ENDPOINT else f"{label} {url}"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return Problem(label, f"{shown} is not an http(s) URL; use for example {DEFAULT_ENDPOINT}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return Problem(
            label,
            f"{shown} is plain http; only https:// is accepted, "
            "except for loopback addresses (127.0.0.1, ::1, localhost)",
        )
    return url


def default_db_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/helios/telemetry.db``, else ``~/.local/share/helios/telemetry.db``."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "helios" / "telemetry.db"


def package_version() -> str:
    """The installed helios-telemetry version, or ``0+unknown`` from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("helios-telemetry")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Config:
    """Everything the environment configures. Build it with :meth:`from_env`; tests pass a dict."""

    db_path: Path
    enabled: EnvChoice
    do_not_track: bool
    endpoint: str
    edition: Edition
    version: str
    problems: tuple[Problem, ...] = ()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        db_path: str | os.PathLike[str] | None = None,
        enabled: bool | str | None = None,
        endpoint: str | None = None,
    ) -> Config:
        """Read the variables of DESIGN.md section 2; never raises.

        :param db_path: overrides ``HELIOS_TELEMETRY_DB`` (``--db``, ``Telemetry(db_path=)``).
        :param enabled: ``True``/``False``/``"local"`` overrides ``HELIOS_TELEMETRY_ENABLED``
            (``Telemetry(enabled=)``; ``False`` locks telemetry off like the variable).
        :param endpoint: overrides ``HELIOS_TELEMETRY_ENDPOINT`` (``--endpoint``).
        """
        env = os.environ if environ is None else environ
        problems: list[Problem] = []

        choice: EnvChoice | Problem
        if enabled is None:
            choice = parse_enabled(env.get(ENABLED))
        elif isinstance(enabled, bool):
            choice = "true" if enabled else "false"
        elif enabled == "local":
            choice = "local"
        else:
            choice = Problem("enabled", f"enabled={enabled!r:.40}: use True, False or 'local'")
        if isinstance(choice, Problem):
            problems.append(choice)
            choice = None

        raw_url = endpoint if endpoint is not None else env.get(ENDPOINT) or DEFAULT_ENDPOINT
        url = check_endpoint(raw_url, "--endpoint" if endpoint is not None else ENDPOINT)
        if isinstance(url, Problem):
            problems.append(url)
            url = raw_url

        raw_edition = env.get(EDITION)
        edition: Edition = "community"
        value = (raw_edition or "community").strip().lower()
        if value == "licensed":
            edition = "licensed"
        elif value != "community":
            problems.append(
                Problem(
                    EDITION,
                    f"{EDITION}={str(raw_edition)[:40]!r} is not understood; "
                    "use community (daily heartbeat) or licensed (hourly)",
                )
            )

        version = (env.get(VERSION) or "").strip() or package_version()
        if not is_valid_version(version):
            problems.append(
                Problem(
                    VERSION,
                    f"{VERSION}={version[:40]!r} is not a PEP 440 or semver version (1.4.2, "
                    "2.0.0-rc.1); the collector would refuse every heartbeat: fix the variable",
                )
            )

        path = db_path or env.get(DB)
        return cls(
            db_path=Path(path).expanduser() if path else default_db_path(env),
            enabled=choice,
            do_not_track=parse_do_not_track(env.get(DO_NOT_TRACK)),
            endpoint=url,
            edition=edition,
            version=version,
            problems=tuple(problems),
        )

    def problem(self, *variables: str) -> Problem | None:
        """The first problem with one of ``variables`` (any variable when none is named)."""
        for p in self.problems:
            if not variables or p.variable in variables:
                return p
        return None

    def require(self, *variables: str) -> Config:
        """Return self, or raise :class:`SettingsError` for a problem with ``variables``."""
        found = self.problem(*variables)
        if found is not None:
            raise SettingsError(found.message)
        return self

    @property
    def enabled_problem(self) -> Problem | None:
        """``HELIOS_TELEMETRY_ENABLED`` (or ``enabled=``) holds a value nobody understands."""
        return self.problem(ENABLED, "enabled")

    @property
    def locked_off(self) -> bool:
        """True when the environment forces telemetry off whatever the organisation says."""
        return self.do_not_track or self.enabled == "false" or self.enabled_problem is not None

    @property
    def assumed(self) -> Literal["true", "false"]:
        """What track calls assume when the organisation never chose (``local`` collects)."""
        return "true" if self.enabled in ("true", "local") and not self.locked_off else "false"

    def decision(self, org: bool | None) -> Decision:
        """The rule of DESIGN.md section 3; ``org`` is the stored organisation choice."""
        return decide(self.enabled, self.do_not_track, org, problem=self.enabled_problem)


def decide(
    env: EnvChoice, do_not_track: bool, org: bool | None, *, problem: Problem | None = None
) -> Decision:
    """The on/off rule as a pure function (see the module docstring)."""
    if do_not_track:
        return Decision("off", DO_NOT_TRACK, True, "DO_NOT_TRACK is set in the environment", True)
    if env == "false":
        return Decision("off", ENABLED, True, f"{ENABLED} is false in the environment", True)
    if problem is not None:
        return Decision("off", ENABLED, True, problem.message)
    if org is not None:
        if not org:
            return Decision(
                "off", "organization_setting", False, "the organisation turned sharing off", True
            )
        mode: Mode = "local" if env == "local" else "on"
        return Decision(
            mode,
            "organization_setting",
            False,
            "the organisation turned sharing on"
            + (f" ({ENABLED}=local: never sent)" if mode == "local" else ""),
        )
    if env == "true":
        return Decision("on", ENABLED, False, f"{ENABLED} is true in the environment")
    if env == "local":
        return Decision(
            "local", ENABLED, False, f"{ENABLED}=local: collected and shown here, never sent"
        )
    return Decision("off", "default", False, "telemetry is off until someone turns it on")
