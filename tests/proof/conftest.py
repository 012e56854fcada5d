"""Fixtures for the proof suite: a seed that is always shown, the real collector.

``HELIOS_PROOF_SEED=N`` replays a run (the seed is printed by every seeded test,
and is part of each of its assertion messages); ``HELIOS_PROOF_SOAK=SECONDS``
turns the kill storm into a soak of that length.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector import Storage
from tests.proof.harness import seed_from_env
from tests.support.collector import Collector


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    print(line)


@pytest.fixture
def say(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line on the terminal even while output is captured."""
    return lambda line: _say(request.config, line)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """``HELIOS_PROOF_SEED`` or a fresh random seed; always printed."""
    value = seed_from_env(random.SystemRandom().randrange(2**32))
    _say(request.config, f"\n{request.node.nodeid}: HELIOS_PROOF_SEED={value}")
    return value


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """The reference collector on a free loopback port, its SQLite file in the test's
    folder, recording every ingest answer."""
    with Collector(Storage(tmp_path / "collector" / "collector.db")) as c:
        yield c
