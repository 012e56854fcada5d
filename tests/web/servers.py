"""Real servers for the contract apps: uvicorn for Starlette and FastAPI, gunicorn for
Flask and Django, each a process group on 127.0.0.1, stopped gracefully (SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.env import child_env, free_port

ROOT = Path(__file__).resolve().parents[2]

ADAPTERS = ("starlette", "fastapi", "flask", "django")
WSGI = ("flask", "django")

#: What each adapter's server runs (the app's factory or WSGI application).
TARGETS = {
    "starlette": "tests.web.apps.starlette_app:create_app",
    "fastapi": "tests.web.apps.fastapi_app:create_app",
    "flask": "tests.web.apps.flask_app:create_app()",
    "django": "tests.web.apps.django_project.wsgi:application",
}


def server_command(
    target: str, port: int, *, wsgi: bool, workers: int = 1, threads: int = 1
) -> list[str]:
    """uvicorn (``--factory``) for an ASGI target, gunicorn for a WSGI one."""
    if wsgi:
        return [
            *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"),
            *("--workers", str(workers), "--threads", str(threads), "--no-control-socket"),
            *("--graceful-timeout", "20", "--log-level", "warning", target),
        ]
    return [
        *(sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", str(workers), "--log-level", "warning"),
    ]


@dataclass
class Server:
    adapter: str
    url: str
    process: subprocess.Popen[str]
    output: str = ""
    #: Requests the start-up made (health polls), to account for in tallies.
    polls: int = 0
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def csrf(self) -> dict[str, str]:
        """What a page of this site gives its scripts for a write: Django's CSRF cookie and
        header (what ``telemetry.js`` sends), nothing for the others."""
        with self.client() as c:
            page = c.get("/settings/privacy")
            assert page.status_code == 200, page.text
            token = page.cookies.get("csrftoken")
        if token is None:
            assert self.adapter != "django"
            return {}
        self.cookies = {"csrftoken": token}
        return {"X-CSRFToken": token, "Cookie": f"csrftoken={token}"}

    def stop(self) -> str:
        """SIGTERM (graceful: every process stores its counts and tally); the output."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.output = self.process.communicate(timeout=60)[0]
        return self.output


def wait_until_up(server: Server, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                server.polls += 1
                return
        except httpx.TransportError:
            pass
        if server.process.poll() is not None:
            raise AssertionError(f"{server.adapter} server exited:\n{server.stop()}")
        assert time.monotonic() < deadline, f"{server.adapter} server did not start"
        time.sleep(0.1)


@contextmanager
def running(
    adapter: str,
    db_path: Path,
    *,
    target: str | None = None,
    workers: int = 1,
    threads: int = 1,
    health: str = "/healthz",
    **environ: str,
) -> Iterator[Server]:
    """Serve ``adapter``'s contract app (or ``target``) on a free port until the block ends
    (``@self`` in an ``environ`` value becomes the server's URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environ = {k: v.replace("@self", url) for k, v in environ.items()}
    command = server_command(
        target or TARGETS[adapter], port, wsgi=adapter in WSGI, workers=workers, threads=threads
    )
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env(HELIOS_TELEMETRY_DB=str(db_path), **environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(adapter, url, process)
    try:
        wait_until_up(server, health)
        yield server
    finally:
        server.stop()
