"""``outbox-collector`` / ``python -m collector`` as an operator runs it: a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from collector.__main__ import main
from collector.schema import DATABASE_SCHEMA_VERSION
from tests.collector.payloads import IID, IID2, auth, body
from tests.support.collector import Collector
from tests.support.env import child_env
from tests.support.processes import wait_for


class Server:
    def __init__(self, proc: subprocess.Popen[str], banner: list[str]) -> None:
        self.proc = proc
        self.banner = banner
        line = next(x for x in banner if "POST " in x)
        self.heartbeat_url = line.split("POST ", 1)[1].strip()
        self.url = self.heartbeat_url.removesuffix("/api/instances/heartbeat")

    def stop(self) -> str:
        """SIGTERM: uvicorn finishes the requests in flight, shuts down, and then
        re-raises the signal, so the exit status says "terminated by SIGTERM"."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == -signal.SIGTERM, err
        assert "Application shutdown complete" in err
        return err


def start(*args: str, timeout: float = 60) -> Server:
    """``python -m collector --port 0 ARGS``, once it has printed its banner;
    ``AssertionError`` if it exits first, or (killed) if the banner takes over ``timeout`` s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read raw, so that a read can never block
    os.set_blocking(fd, False)
    out = bytearray()
    ended = False

    def banner_or_exit() -> bool:
        nonlocal ended
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(fd, 65536)
            out.extend(chunk)
            ended = not chunk
        return ended or b"Press Ctrl-C" in out

    try:
        wait_for("the collector's banner", banner_or_exit, timeout)
    except AssertionError as e:
        proc.kill()
        _, err = proc.communicate(timeout=20)
        raise AssertionError(f"{e}: {out.decode(errors='replace')}{err}") from None
    os.set_blocking(fd, True)
    banner = []
    for line in out.decode(errors="replace").splitlines(keepends=True):
        banner.append(line)
        if "Press Ctrl-C" in line:
            return Server(proc, banner)
    _, err = proc.communicate(timeout=20)
    raise AssertionError(f"the collector did not start: {''.join(banner)}{err}")


@pytest.fixture
def server(db_target: str) -> Iterator[Server]:
    s = start("--db", db_target)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.communicate()


@pytest.mark.slow
def test_serves_heartbeats_and_logs_no_client_address(server: Server) -> None:
    assert server.banner[0].startswith("outbox-collector: storing in ")
    assert "app-pw" not in "".join(server.banner)  # a PostgreSQL password is never printed
    assert any(f"dashboard   {server.url}/insights" in line for line in server.banner)
    with httpx.Client(base_url=server.url, trust_env=False, headers=auth(IID)) as http:
        r = http.post(
            server.heartbeat_url, content=body(), headers={"Content-Type": "application/json"}
        )
        assert r.json()["status"] == "accepted"
        assert http.get(f"/api/instances/{IID}").json()["totals"] == {
            "api": 15,
            "command": 1,
            "ui": 2,
        }
        assert http.delete(f"/api/instances/{IID}").status_code == 200
        assert http.get("/healthz").status_code == 200
    err = server.stop()
    assert "collector.access: POST /api/instances/heartbeat 200 " in err
    assert "collector.access: DELETE /api/instances/{id} 200 " in err
    assert IID not in err  # the instance id is masked
    assert auth(IID)["Authorization"].split()[1] not in err  # the secret is never logged
    assert "127.0.0.1" not in err  # no client address, in any log line


@pytest.mark.slow
def test_the_database_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    b = body()
    first = start("--db", db, "--no-access-log")
    h = {"Content-Type": "application/json", **auth(IID)}
    httpx.post(first.heartbeat_url, content=b, headers=h)
    first.stop()
    second = start("--db", db, "--no-access-log")
    r = httpx.post(second.heartbeat_url, content=b, headers=h)
    assert r.json()["status"] == "duplicate"
    assert "collector.access" not in second.stop()


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--max-body", "--writers", "--access-log"):
        assert option in result.output


def test_an_unknown_database_scheme_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["--db", "mysql://u:p@127.0.0.1/x"])
    assert result.exit_code == 1
    assert "unsupported database URL scheme 'mysql'" in result.output
    assert "postgresql://USER:PASSWORD@HOST:PORT/DB" in result.output


def test_a_database_from_a_newer_collector_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER)")
    conn.execute("INSERT INTO schema_version VALUES (99, 0)")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(main, ["--db", str(db)])
    assert result.exit_code == 1
    assert "schema version 99" in result.output
    assert "upgrade helios-telemetry" in result.output


def test_an_unreachable_postgresql_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["--db", "postgresql://app:pw@127.0.0.1:9/none"])
    assert result.exit_code == 1
    assert "cannot use PostgreSQL at postgresql://app:***@127.0.0.1:9/none (PostgreSQL)" in (
        result.output
    )


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--db", str(tmp_path / "c.db"), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "choose another --port" in result.output


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    from collector import Storage

    storage = Storage(tmp_path / "c.db")
    assert storage.migrate(now=1) == 0
    assert storage.migrate(now=2) == DATABASE_SCHEMA_VERSION
    storage.close()
    rows = sqlite3.connect(tmp_path / "c.db").execute("SELECT * FROM schema_version").fetchall()
    assert rows == [(DATABASE_SCHEMA_VERSION, 1)]


def test_the_operator_lists_reads_and_forgets_instances(
    collector: Collector, db_target: str
) -> None:
    """Per-instance data: on the command line (the database), never on the public pages."""
    collector.post(body(sequence=1))
    collector.post(body(sequence=3, instance_id=IID2, version="1.5.0"))
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["instances", "--db", db_target, "--json"]).output)
    assert [(i["instance_id"], i["version"], i["missing"], i["credential"]) for i in listed] == [
        (IID, "1.4.2", 0, True),
        (IID2, "1.5.0", 2, True),
    ]
    table = runner.invoke(main, ["instances", "--db", db_target]).output
    assert f"{IID}  2026-11-25T10:00:00Z  1.4.2" in table
    assert table.endswith("2 instances\n")
    one = json.loads(runner.invoke(main, ["instances", "--db", db_target, "--json", IID]).output)
    assert one["totals"] == {"api": 15, "command": 1, "ui": 2}
    assert {(n["kind"], n["name"], n["first_day"], n["last_day"]) for n in one["names"]} == {
        ("api", "users.list", "2026-11-24", "2026-11-25"),
        ("api", "groups.get", "2026-11-25", "2026-11-25"),
        ("command", "sync", "2026-11-25", "2026-11-25"),
        ("ui", "bulk_edit", "2026-11-24", "2026-11-24"),
    }
    # The operator needs no secret to forget.
    out = runner.invoke(main, ["forget", "--db", db_target, "--yes", IID])
    assert out.exit_code == 0, out.output
    assert out.output == f"forgot instance {IID}: 1 heartbeats, 18 counts subtracted\n"
    again = runner.invoke(main, ["forget", "--db", db_target, "--yes", IID])
    assert again.exit_code == 1
    assert f"no heartbeat from instance {IID} is stored" in again.output
    assert collector.insights(days=7)["totals"] == {"api": 15, "command": 1, "ui": 2}


def test_every_collector_module_loads_only_the_contract_of_outbox() -> None:
    code = (
        "import sys, pkgutil, importlib, collector; "
        "[importlib.import_module('collector.' + m.name) "
        " for m in pkgutil.iter_modules(collector.__path__)]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'outbox'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env()
    )
    assert out.stdout.strip() == "['outbox', 'outbox.contract']"


def test_the_collector_page_documents_every_option_and_command() -> None:
    section = (Path(__file__).resolve().parents[2] / "docs" / "collector.md").read_text()
    for param in main.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and opt != "--help":
                assert f"`{opt}" in section, opt
    for name in main.commands:  # type: ignore[attr-defined]
        assert f"outbox-collector {name}" in section, name
