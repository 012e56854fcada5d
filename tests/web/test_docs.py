"""The README and docs/ say what the code does: the disclosure lists, the schedule, the
routes, the naming examples, the screenshots, and every Python sample type-checks."""

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
PAGES = sorted((ROOT / "docs").glob("*.md"))


def section(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"<!-- section: {name} -->")
    end = text.find("<!-- section:", start + 1)
    return text[start : end if end != -1 else None]


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def bullets_after(text: str, heading: str) -> list[str]:
    block = text[text.index(heading) + len(heading) :]
    lines = block.strip("\n").splitlines()
    out = []
    for line in lines[lines.index(next(ln for ln in lines if ln.startswith("- "))) :]:
        if not line.startswith("- "):
            break
        out.append(line[2:])
    return out


def test_the_readme_and_the_privacy_page_list_exactly_what_disclosure_says() -> None:
    for text in (section("what is collected"), page("privacy.md")):
        assert bullets_after(text, "Collected, only while telemetry is on:") == list(
            disclosure.COLLECTED
        )
        assert bullets_after(text, "Never collected:") == list(disclosure.NOT_COLLECTED)


def test_the_integration_page_documents_every_route() -> None:
    text = page("integration.md")
    for path in (Paths().ui_actions, Paths().settings, Paths().page, Paths().help_json):
        assert f"`{path}`" in text or f"{path}`" in text, path
    for status in ("202", "204", "403", "409", "413", "415", "422", "503"):
        assert f"`{status}`" in text, status


def test_the_pages_show_every_screenshot_and_every_screenshot_is_shown() -> None:
    shown = {
        image for p in PAGES for image in re.findall(r"\]\(img/([a-z-]+\.png)\)", p.read_text())
    }
    assert {"privacy-on.png", "privacy-off.png", "privacy-locked.png"} <= set(
        re.findall(r"\]\(img/([a-z-]+\.png)\)", page("privacy.md"))
    )
    assert "insights.png" in re.findall(r"\]\(img/([a-z-]+\.png)\)", page("collector.md"))
    assert shown == {p.name for p in (ROOT / "docs/img").glob("*.png")}
    for image in shown:
        assert (ROOT / "docs/img" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claude_md_states_the_command_naming_convention() -> None:
    text = (ROOT / "CLAUDE.md").read_text()
    assert "`noun` or `noun.verb`" in text and "tracked_command" in text


def python_samples() -> list[tuple[str, str]]:
    """(file stem, code) of every ```python block of the README and the docs pages."""
    samples = []
    for source in (ROOT / "README.md", *PAGES):
        blocks = re.findall(r"```python\n(.*?)```", source.read_text(), flags=re.S)
        samples += [(f"{source.stem.lower()}_{i}", block) for i, block in enumerate(blocks)]
    return samples


def test_every_python_sample_of_the_docs_passes_mypy_strict(tmp_path: Path) -> None:
    samples = python_samples()
    assert len([s for s in samples if s[0].startswith("readme_")]) == 1
    assert len(samples) >= 10
    files = []
    for stem, sample in samples:
        path = tmp_path / f"sample_{stem}.py"
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
    for text in (section("turning it on and off"), page("privacy.md")):
        assert disclosure.SCHEDULE in " ".join(text.split())
    assert disclosure.SCHEDULE in " ".join(HELP_TEXT.split())


def test_the_naming_examples_are_what_the_code_does() -> None:
    text = page("integration.md")
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
