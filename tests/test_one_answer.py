"""One parser, one answer: every value of HELIOS_TELEMETRY_ENABLED and DO_NOT_TRACK gives the
same decision, in the same words, to the library, the ``outbox`` command and the worker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from outbox import Telemetry
from outbox.cli import CliContext, cli
from worker.__main__ import Parts
from worker.__main__ import main as worker_main

VALUES = ["", "0", "false", "no", "1", "true", "yes", "maybe"]
NOT_UNDERSTOOD = (
    "HELIOS_TELEMETRY_ENABLED='maybe' is not understood, so telemetry is off; use true, false "
    "or local (or unset it)"
)


def expected(enabled: str, dnt: str) -> tuple[str, str]:
    """The table (DESIGN.md sections 2 and 3, the DO_NOT_TRACK console convention)."""
    if dnt not in ("", "0", "false"):  # any other value, "no" included, means off
        return "off", "DO_NOT_TRACK is set in the environment"
    if enabled in ("0", "false", "no"):
        return "off", "HELIOS_TELEMETRY_ENABLED is false in the environment"
    if enabled == "maybe":
        return "off", NOT_UNDERSTOOD
    if enabled in ("1", "true", "yes"):
        return "on", "HELIOS_TELEMETRY_ENABLED is true in the environment"
    return "off", "telemetry is off until someone turns it on"


def environ(enabled: str, dnt: str) -> dict[str, str]:
    return {"HELIOS_TELEMETRY_ENABLED": enabled, "DO_NOT_TRACK": dnt}


@pytest.mark.parametrize("dnt", VALUES + ["other"])
@pytest.mark.parametrize("enabled", VALUES)
def test_library_and_cli_give_one_answer(tmp_path: Path, enabled: str, dnt: str) -> None:
    mode, reason = expected(enabled, "other" if dnt == "maybe" else dnt)
    env = environ(enabled, dnt)
    d = Telemetry(db_path=tmp_path / "t.db", environ=env).decision()
    assert (d.mode, d.reason) == (mode, reason)
    r = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "t.db"), "status", "--json"],
        env=env,
        obj=CliContext(),
        catch_exceptions=False,
    )
    doc = json.loads(r.stdout)
    assert (doc["mode"], doc["decided_by"]["reason"]) == (mode, reason)
    # A value nobody understands is a problem to fix even where DO_NOT_TRACK decides.
    assert (NOT_UNDERSTOOD in doc["problems"]) is (enabled == "maybe")


@pytest.mark.parametrize("dnt", ["", "0", "false", "no", "1", "other"])
@pytest.mark.parametrize("enabled", VALUES)
def test_the_worker_gives_the_same_answer(
    tmp_path: Path, enabled: str, dnt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mode, reason = expected(enabled, dnt)
    posts: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200, json={"status": "accepted"})

    t = Telemetry(db_path=tmp_path / "t.db", environ={"HELIOS_TELEMETRY_ENABLED": "true"})
    assert t.track_command("sync")
    t.close()
    parts = Parts(environ=environ(enabled, dnt), transport=httpx.MockTransport(receiver))
    logging.getLogger("worker").handlers.clear()
    argv = ["--once", "--db", str(tmp_path / "t.db"), "--endpoint", "http://127.0.0.1:9/hb"]
    code = worker_main(argv, parts=parts)
    out = capsys.readouterr()
    if enabled == "maybe":  # a worker that cannot be configured does not start
        assert (code, posts) == (2, [])
        assert f"outbox-worker: {NOT_UNDERSTOOD}" in out.err
    elif mode == "on":
        assert code == 0 and len(posts) == 1
    elif reason == "telemetry is off until someone turns it on":  # says nothing: holds back
        assert (code, posts) == (1, [])
        assert f"not sent, not deleted: telemetry is off for this worker ({reason})" in out.err
    else:  # an explicit opt-out
        assert (code, posts) == (0, [])
        assert out.out.startswith("telemetry is off: nothing sent, no connection opened")
