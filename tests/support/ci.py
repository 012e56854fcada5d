"""Under CI nothing real is skipped: what "under CI" means, and the on-purpose skips.

``CI`` is set by every CI service (and by ``.ci/run``); any value but empty, ``0``,
``false`` or ``no`` counts. Under CI a skip is a failure (``tests/conftest.py`` turns
every skip into one), and the ``HELIOS_SKIP_*`` variables are refused before a test runs.
"""

from __future__ import annotations

import os

import pytest

#: What to run when a system package is missing (README: "Running the tests").
INSTALL_COMMAND = "scripts/install-system-packages"

SKIP_PREFIX = "HELIOS_SKIP_"


def in_ci() -> bool:
    """Whether the ``CI`` environment variable asks for the strict run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_variables() -> list[str]:
    """The ``HELIOS_SKIP_*`` variables set (to anything) in this environment."""
    return sorted(k for k, v in os.environ.items() if k.startswith(SKIP_PREFIX) and v)


def skip_on_purpose(variable: str, what: str) -> None:
    """Skip the calling test or fixture when ``variable=1``, outside CI only.

    Under CI the variable is a failure: a CI run that skips a real part proves nothing.
    """
    if os.environ.get(variable) != "1":
        return
    if in_ci():
        pytest.fail(
            f"{variable}=1 is set, and so is CI: under CI {what} must run; unset {variable}",
            pytrace=False,
        )
    pytest.skip(f"{variable}=1: {what} skipped on purpose")
