"""The framework-neutral core imports no web framework; ``outbox.web`` loads lazily."""

from __future__ import annotations

import subprocess
import sys

import outbox.web
from tests.helpers import child_env

CORE = [
    "outbox.commands",
    "outbox.web",
    "outbox.web.naming",
    "outbox.web.counting",
    "outbox.web.validation",
    "outbox.web.authorize",
    "outbox.web.view",
    "outbox.web.page",
    "outbox.web.help",
    "outbox.web.endpoints",
    "outbox.web.asgi",  # pure ASGI: RelayTracking needs no framework
    "outbox.web.writer",
]

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"starlette", "fastapi", "flask", "django", "werkzeug"}:
            raise ImportError(f"{name} is blocked: the core must not import it")
sys.meta_path.insert(0, Block())
"""


def test_the_core_imports_no_web_framework() -> None:
    code = (
        BLOCK
        + "\n".join(f"import {m}" for m in CORE)
        + """
from outbox.web import tracked_command, DEFAULT_RELAY_RESOURCES, RelayTracking, Vocabulary
from outbox.commands import tracked_command as same
assert tracked_command is same

@tracked_command("sync")
def sync():
    return 1

assert sync() == 1
assert Vocabulary.build(DEFAULT_RELAY_RESOURCES).name("GET", "/users/jdoe") == "users.get"
RelayTracking(lambda scope, receive, send: None)
print("ok")
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_the_starlette_adapter_is_what_needs_starlette() -> None:
    code = BLOCK + "from outbox.web import telemetry_routes\n"
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "starlette is blocked" in result.stderr


def test_every_exported_name_resolves() -> None:
    assert outbox.web.__all__ == sorted(outbox.web.__all__)
    for name in outbox.web.__all__:
        assert getattr(outbox.web, name) is not None, name
