"""The help and docs/cli.md stay true: every command has help with an example that
parses and appears on the page, and the page's transcript and JSON keys match what
the commands print."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from outbox.cli import CliContext, cli
from outbox.config import package_version
from tests.cli import demo

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
COMMANDS = sorted(cli.commands)


def section(heading: str | None = None) -> str:
    """docs/cli.md, or only its part under ``## heading`` (up to the next ``## ``)."""
    text = PAGE.read_text(encoding="utf-8")
    if heading is None:
        return text
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def examples(help_text: str) -> list[str]:
    """The command lines under ``Example:`` in a help text."""
    lines = help_text.split("Example:", 1)[1].splitlines()
    return [ln.strip() for ln in lines if ln.strip().startswith("outbox ")]


def test_the_group_has_help_and_a_version(run):
    r = run("--help")
    assert r.exit_code == 0 and examples(r.output) == ["outbox status"]
    for name in COMMANDS:
        assert f"  {name} " in r.output
    assert run("--version").output == f"outbox, version {package_version()}\n"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_on_the_page(run, name):
    r = run(name, "--help")
    assert r.exit_code == 0
    assert examples(r.output), f"`outbox {name} --help` shows no example"
    assert all(e.startswith(f"outbox {name}") or "--db" in e for e in examples(r.output))
    assert f"`outbox {name}" in section("Commands")
    assert run(name, "-h").output == r.output


@pytest.mark.parametrize("name", COMMANDS)
def test_help_examples_parse(run, history, tmp_path, name):
    """Each example runs (no usage error) on a real outbox, never on a real path or service."""
    for example in examples(run(name, "--help").output):
        words = shlex.split(re.split(r"\s[|>]\s", example)[0])[1:]
        if "--db" in words:
            words[words.index("--db") + 1] = str(history.path)
        env = {"HELIOS_TELEMETRY_ENDPOINT": "http://127.0.0.1:9/api/instances/heartbeat"}
        r = run(*words, env=env, input="n\n")
        assert r.exit_code in (0, 1), f"{example}: {r.output}"
        assert "Usage:" not in r.stderr


def _normalise(text: str) -> str:
    """Mask what changes from run to run: times, counts, sizes, wrapping, alignment."""
    text = re.sub(r"\((?:in )?(?:\d+[dhms] ?)+(?:ago)?\)|\(now\)", "(WHEN)", text)
    text = re.sub(r"\d+(\.\d+)?", "0", text)
    return " ".join(text.split())


def transcript() -> list[tuple[str, str]]:
    """(command, output) pairs of the ``$ outbox ...`` lines of the page's session."""
    block = section("A session").split("```console", 1)[1].split("```", 1)[0]
    pairs: list[tuple[str, str]] = []
    for chunk in block.split("\n$ ")[1:]:
        command, _, output = chunk.partition("\n")
        if command.startswith("outbox "):
            pairs.append((command, output))
    return pairs


def test_the_transcript_is_what_the_commands_print(tmp_path, monkeypatch):
    pairs = transcript()
    assert [c for c, _ in pairs] == [
        "outbox status",
        "outbox show",
        "outbox preview",
        "outbox purge --dry-run",
        "outbox heartbeats",
    ]
    monkeypatch.chdir(tmp_path)
    demo.build(Path("demo/telemetry.db"), __import__("time").time())
    env = {"HELIOS_TELEMETRY_DB": "demo/telemetry.db", "HELIOS_VERSION": "1.4.2"}
    for command, expected in pairs:
        r = CliRunner().invoke(
            cli, shlex.split(command)[1:], env=env, obj=CliContext(), catch_exceptions=False
        )
        assert r.exit_code == 0
        assert _normalise(r.output) == _normalise(expected), command


@pytest.mark.parametrize(
    ("args", "fence"),
    [(["status", "--json"], 0), (["show", "--json"], 1), (["heartbeats", "--json"], 2)],
)
def test_every_json_key_is_documented(run, history, args, fence):
    def keys(value: object) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    printed = keys(json.loads(run(*args).stdout))
    blocks = section("JSON output").split("```json")[1:]
    documented = keys(json.loads(blocks[fence].split("```")[0]))
    assert printed - documented == set()
