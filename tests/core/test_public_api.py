"""The public surface: exported names, and that importing and constructing touch nothing."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import outbox
from outbox import Telemetry
from tests.support.env import child_env
from tests.support.processes import ROOT, run_python, worker_env


def test_all_is_sorted_and_complete() -> None:
    assert outbox.__all__ == sorted(outbox.__all__)
    assert all(hasattr(outbox, n) for n in outbox.__all__)
    # Everything listed is resolvable, and nothing else is (besides the submodules).
    with pytest.raises(AttributeError):
        outbox.api_name  # noqa: B018  # names are made from route templates now
    loaded = {
        n for n, v in vars(outbox).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert loaded - {"annotations", "Any", "TYPE_CHECKING"} <= set(outbox.__all__)


def test_the_contract_loads_nothing_else_of_the_package() -> None:
    code = (
        "import sys, outbox.contract, collector.validate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'outbox'))"
    )
    out = run_python(code)
    assert out.stdout.strip() == "['outbox', 'outbox.contract']"
    assert "register_at_fork" not in (ROOT / "outbox" / "__init__.py").read_text()


def test_importing_and_tracking_disabled_touches_no_file(tmp_path: Path) -> None:
    code = (
        "import outbox; outbox.telemetry.track_api_call('users.list'); "
        "outbox.telemetry.track_command('sync'); print(outbox.telemetry.enabled)"
    )
    out = run_python(code, cwd=tmp_path, env=child_env(HOME=str(tmp_path)))
    assert out.stdout.strip() == "False" and out.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_singleton_uses_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    code = (
        "from outbox import telemetry as t; assert t.track_api_call('users.list'); "
        "print(t.db_path, t.mode)"
    )
    out = run_python(code, env=worker_env(path))
    assert out.stdout.split() == [str(path), "on"]


def test_constructing_never_raises_whatever_the_arguments(tmp_path: Path) -> None:
    t = Telemetry(db_path=tmp_path / "x" / "y.db", enabled="sometimes", environ={})  # type: ignore[arg-type]
    assert t.track_api_call("users.list") is False
    assert "enabled='sometimes'" in (t.last_error or "")
    assert not (tmp_path / "x").exists()
