"""The framework-neutral core imports no web framework; ``outbox.web`` loads lazily."""

from __future__ import annotations

import subprocess
import sys

import outbox.web
from tests.support.env import child_env

CORE = [
    "outbox.commands",
    "outbox.web",
    "outbox.web.naming",
    "outbox.web.counting",
    "outbox.web.tracking",
    "outbox.web.validation",
    "outbox.web.authorize",
    "outbox.web.view",
    "outbox.web.page",
    "outbox.web.help",
    "outbox.web.endpoints",
    "outbox.web.asgi",  # pure ASGI: RelayTracking needs no framework
    "outbox.web.writer",
    "outbox.web.wsgi",  # the WSGI tracking and the synchronous serving steps
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


def blocking(*frameworks: str) -> str:
    return f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(frameworks)!r}:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60
    )


def test_the_flask_adapter_imports_nothing_of_starlette_or_django() -> None:
    code = blocking("starlette", "fastapi", "django") + (
        "from flask import Flask\n"
        "from outbox.web.flask import init_app\n"
        "init_app(Flask('x'), ui_actions=['bulk_edit'])\n"
        "print('ok')\n"
    )
    result = run(code)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_the_django_adapter_imports_nothing_of_starlette_or_flask() -> None:
    """(and its write views check CSRF even where the host has no CsrfViewMiddleware)"""
    code = blocking("starlette", "fastapi", "flask", "werkzeug") + (
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure(ROOT_URLCONF='outbox.web.django.urls', ALLOWED_HOSTS=['*'],\n"
        "    MIDDLEWARE=['outbox.web.django.RouteTrackingMiddleware'])\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "assert Client().get('/telemetry/static/telemetry.js').status_code == 200\n"
        "# no CsrfViewMiddleware here: the views are CSRF-protected by themselves\n"
        "post = Client(enforce_csrf_checks=True).post('/api/telemetry/ui-actions', {},\n"
        "    content_type='application/json', HTTP_ORIGIN='http://testserver')\n"
        "assert post.status_code == 403 and b'CSRF' in post.content, post.content\n"
        "print('ok')\n"
    )
    result = run(code)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_each_adapter_is_what_needs_its_framework() -> None:
    for module, framework in (("outbox.web.flask", "flask"), ("outbox.web.django", "django")):
        result = run(blocking(framework) + f"import {module}\n")
        assert result.returncode == 1 and f"{framework} is blocked" in result.stderr, module
