"""@tracked_command: once per call (also on failure), sync and async, names checked early."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import outbox
from outbox import Telemetry
from outbox.web import (
    CommandNameError,
    is_command_name,
    registered_commands,
    tracked_command,
)
from tests.support.env import child_env
from tests.web.conftest import run_async, stored

ROOT = Path(__file__).resolve().parents[2]


def test_a_sync_command_is_counted_once_per_call(on: Telemetry, db_path: Path) -> None:
    @tracked_command("sync", telemetry=on)
    def sync(n: int, *, twice: bool = False) -> int:
        return n * (2 if twice else 1)

    assert [sync(1), sync(2, twice=True), sync(3)] == [1, 4, 3]
    assert stored(db_path) == {("command", "sync"): 3}


def test_an_async_command_is_counted_once_per_call(on: Telemetry, db_path: Path) -> None:
    @tracked_command("users.import", telemetry=on)
    async def import_users(rows: list[str]) -> int:
        await asyncio.sleep(0)
        return len(rows)

    assert inspect.iscoroutinefunction(import_users)

    async def main() -> list[int]:
        return [await import_users(["a", "b"]), await import_users([])]

    assert run_async(main) == [2, 0]
    assert stored(db_path) == {("command", "users.import"): 2}


def test_a_failing_command_is_counted_and_its_error_is_unchanged(
    on: Telemetry, db_path: Path
) -> None:
    class SyncFailed(Exception):
        pass

    @tracked_command("sync", telemetry=on)
    def sync() -> None:
        raise SyncFailed("directory unreachable")

    @tracked_command("deploy", telemetry=on)
    async def deploy() -> None:
        raise SyncFailed("no target")

    for _ in range(2):
        with pytest.raises(SyncFailed, match="directory unreachable"):
            sync()
    with pytest.raises(SyncFailed, match="no target"):
        run_async(deploy)
    assert stored(db_path) == {("command", "sync"): 2, ("command", "deploy"): 1}


def test_the_wrapper_keeps_the_function_s_identity(on: Telemetry) -> None:
    @tracked_command("sync", telemetry=on)
    def sync(directory: str) -> str:
        """Synchronise with the directory."""
        return directory

    assert sync.__name__ == "sync"
    assert sync.__doc__ == "Synchronise with the directory."
    assert list(inspect.signature(sync).parameters) == ["directory"]


def test_disabled_telemetry_counts_nothing_and_the_command_still_runs(
    off: Telemetry, db_path: Path
) -> None:
    @tracked_command("sync", telemetry=off)
    def sync() -> str:
        return "done"

    assert sync() == "done"
    assert not db_path.exists()


def test_a_broken_outbox_never_reaches_the_command(make_telemetry, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"garbage" * 512)
    broken = make_telemetry(enabled=True)

    @tracked_command("sync", telemetry=broken)
    def sync() -> str:
        return "done"

    assert [sync(), sync()] == ["done", "done"]
    assert broken.unstored == {"storage_error": 2}


def test_even_a_raising_telemetry_never_reaches_the_command(db_path: Path) -> None:
    class Exploding(Telemetry):
        def track_command(self, name: str, count: int = 1) -> bool:
            raise RuntimeError("boom")

    @tracked_command("sync", telemetry=Exploding(db_path=db_path, environ={}))
    def sync() -> str:
        return "done"

    assert sync() == "done"


def test_without_a_telemetry_the_singleton_is_used_at_call_time(
    monkeypatch: pytest.MonkeyPatch, on: Telemetry, db_path: Path
) -> None:
    @tracked_command("sync")
    def sync() -> None:
        pass

    # The singleton is looked up on each call, so an app may configure it after import.
    monkeypatch.setattr(outbox, "telemetry", on)
    sync()
    assert stored(db_path) == {("command", "sync"): 1}


@pytest.mark.parametrize("name", ["sync", "deploy", "export", "users.import", "v2.sync", "a_b.c_d"])
def test_good_command_names(name: str) -> None:
    assert is_command_name(name)
    tracked_command(name)  # no error


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Sync",
        "users.import.all",  # three segments: noun.verb at most
        "users-import",
        "users import",
        "users/import",
        "2fa.reset",
        "users.",
        ".sync",
        "bob@example.com",
        "s" * 65,
        "sync\n",
    ],
)
def test_bad_command_names_fail_at_decoration_time(name: str) -> None:
    assert not is_command_name(name)
    with pytest.raises(CommandNameError, match="noun.verb"):
        tracked_command(name)


def test_a_bad_literal_fails_when_the_module_is_imported(tmp_path: Path) -> None:
    module = tmp_path / "bad_commands.py"
    module.write_text(
        "from outbox.web import tracked_command\n\n"
        "@tracked_command('Users.Import')\n"
        "def import_users():\n"
        "    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import bad_commands"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "CommandNameError: command name 'Users.Import' breaks the convention" in result.stderr


def test_decorated_names_are_registered(on: Telemetry) -> None:
    @tracked_command("registry.check", telemetry=on)
    def check() -> None:
        pass

    assert "registry.check" in registered_commands()
    assert any(q.endswith("check") for q in registered_commands()["registry.check"])


def _tracked_command_literals() -> list[tuple[str, int, object]]:
    """Every ``tracked_command(...)`` first argument in the shipped code and the examples."""
    found = []
    files = [*(ROOT / "outbox").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    files += list((ROOT / "worker").rglob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tracked_command"
                and node.args
            ):
                arg = node.args[0]
                value = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
                found.append((str(path.relative_to(ROOT)), node.lineno, value))
    return found


def test_every_command_name_in_the_code_follows_the_convention() -> None:
    found = _tracked_command_literals()
    assert any(path.startswith("examples/") for path, _, _ in found)  # the scan sees them
    bad = [(p, line, v) for p, line, v in found if not is_command_name(v)]
    assert bad == [], "use literal names 'noun' or 'noun.verb' (see CLAUDE.md)"
    # and what the modules actually registered when imported
    importlib.import_module("examples.host_app").create_app(outbox.telemetry)
    names = registered_commands()
    assert {"sync", "users.export"} <= set(names)
    assert all(is_command_name(n) for n in names)
