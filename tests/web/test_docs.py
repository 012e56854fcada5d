"""The README says what the code does: the disclosure lists, the routes, the screenshots."""

from __future__ import annotations

import re
from pathlib import Path

from outbox import disclosure
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
