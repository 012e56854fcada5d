"""The README says what the code does: the disclosure lists, the routes, the screenshots."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from outbox import disclosure
from outbox.web import HELP_TEXT
from outbox.web.naming import DEFAULT_RELAY_RESOURCES, Vocabulary, name_from_template
from outbox.web.page import Paths

ROOT = Path(__file__).resolve().parents[2]


def section(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"<!-- section: {name} -->")
    end = text.find("<!-- section:", start + 1)
    return text[start : end if end != -1 else None]


def bullets_after(text: str, heading: str) -> list[str]:
    block = text[text.index(heading) + len(heading) :]
    lines = block.strip("\n").splitlines()
    out = []
    for line in lines[lines.index(next(ln for ln in lines if ln.startswith("- "))) :]:
        if not line.startswith("- "):
            break
        out.append(line[2:])
    return out


def test_the_readme_lists_exactly_what_disclosure_says() -> None:
    text = section("what is collected")
    assert bullets_after(text, "Collected, only while telemetry is on:") == list(
        disclosure.COLLECTED
    )
    assert bullets_after(text, "Never collected:") == list(disclosure.NOT_COLLECTED)


def test_the_web_section_documents_every_route_and_shows_a_screenshot() -> None:
    text = section("web")
    for path in (Paths().ui_actions, Paths().settings, Paths().page, Paths().help_json):
        assert f"`{path}`" in text or f"{path}`" in text, path
    for status in ("202", "204", "403", "409", "413", "415", "422", "503"):
        assert f"`{status}`" in text, status
    images = re.findall(r"\(docs/img/(privacy-[a-z]+\.png)\)", text)
    assert set(images) == {"privacy-on.png", "privacy-off.png", "privacy-locked.png"}
    for image in images:
        assert (ROOT / "docs/img" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claude_md_states_the_command_naming_convention() -> None:
    text = (ROOT / "CLAUDE.md").read_text()
    assert "`noun` or `noun.verb`" in text and "tracked_command" in text


def python_samples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_python_sample_in_the_readme_passes_mypy_strict(tmp_path: Path) -> None:
    samples = python_samples()
    assert len(samples) >= 5
    files = []
    for i, sample in enumerate(samples):
        path = tmp_path / f"readme_sample_{i}.py"
        path.write_text(sample)
        files.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
        + ["--cache-dir", str(ROOT / ".mypy_cache" / "readme"), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_says_when_heartbeats_go_in_the_words_of_the_code() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert disclosure.SCHEDULE in readme
    assert disclosure.SCHEDULE in " ".join(HELP_TEXT.split())


def test_the_readme_naming_examples_are_what_the_code_does() -> None:
    text = section("web")
    row = "`/api/users/{user_id}/groups` | `GET /api/users/42/groups` | `users.groups.list`"
    assert row in text
    assert name_from_template("GET", "/api/users/{user_id}/groups") == "users.groups.list"
    assert name_from_template("GET", "/api/users/by-name/{username}") == "users.by_name.get"
    assert name_from_template("GET", "/api/files/{path:path}") == "files.get"
    relay = Vocabulary.build(DEFAULT_RELAY_RESOURCES)
    assert "`GET /api/relay/users/jdoe/memberOf` → `users.member_of.list`" in text
    assert relay.name("GET", "/users/jdoe/memberOf") == "users.member_of.list"
    assert relay.name("GET", "/hosts/db01") is None
    for word in ("users.groups", "groups.members", "orgunits", "licenses", "audit_logs"):
        assert word in DEFAULT_RELAY_RESOURCES and f"`{word}`" in text
