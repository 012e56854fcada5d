"""The README, CLAUDE.md and the pages of docs/ stay within their sizes and point at things
that exist: files, anchors, modules and their names, options, variables, proof tests.

(`make docs` builds docs/ with MkDocs in strict mode, which checks links between pages;
this checks what MkDocs does not see: the README, CLAUDE.md, and names in code spans.)
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from markdown.extensions.toc import slugify

from outbox import config
from worker.__main__ import cli as worker_cli
from worker.pacing import STEPS

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
TEXTS = [ROOT / "README.md", ROOT / "CLAUDE.md", *PAGES]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """``text`` without its fenced blocks (a ``# comment`` in a sample is not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The ids MkDocs (Python-Markdown's toc) gives the headings of a page."""
    headings = re.findall(r"^#{1,6} (.+)$", prose(read(path)), flags=re.M)
    return {slugify(h.replace("`", "").replace("*", ""), "-") for h in headings}


def test_the_readme_and_claude_md_fit_their_readers() -> None:
    assert len(read(ROOT / "README.md").splitlines()) <= 250
    assert len(read(ROOT / "CLAUDE.md").splitlines()) <= 120


@pytest.mark.parametrize("name", ["README.md", "CLAUDE.md"])
def test_every_relative_link_of_the_top_level_files_resolves(name: str) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", prose(read(ROOT / name)))
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local, name
    for link in local:
        target, _, anchor = link.partition("#")
        path = (ROOT / target) if target else ROOT / name
        assert path.exists(), link
        if anchor:
            assert anchor in anchors(path), link


def test_the_readme_links_every_page_of_the_site() -> None:
    linked = set(re.findall(r"\]\(docs/([a-z]+\.md)[)#]", read(ROOT / "README.md")))
    assert linked == {p.name for p in PAGES}


def test_every_path_in_a_code_span_exists() -> None:
    pyproject = tomllib.loads(read(ROOT / "pyproject.toml"))
    shipped = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"].values())
    pattern = (
        r"`((?:tests|benchmarks|examples|contrib|outbox|worker|collector|scripts|docs)/[^`\s]*)`"
    )
    seen = 0
    for path in TEXTS:
        for named in re.findall(pattern, read(path)):
            if re.search(r"[{*<]", named) or named in shipped or "/.results" in named:
                continue  # a pattern, a file made by the build, or figures a run writes
            seen += 1
            assert (ROOT / named).exists(), f"{path.name}: {named}"
    assert seen >= 50


#: Dotted strings of the texts that start like a module of ours but are no Python name.
NOT_PYTHON_NAMES = {
    "collector.db",  # the collector's default SQLite file
    "collector.py",  # a file of tests/support/
    "outbox.exists",  # a key of the JSON `helios-telemetry status` prints
}


def _resolve(dotted: str) -> object | None:
    """The object a dotted name in a code span names, down to the top-level package
    (``outbox.Telemetry``), or None when not even that imports."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        assert isinstance(obj, ModuleType)
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)  # AttributeError: the text names what is gone
        return obj
    return None


def test_every_dotted_name_of_a_module_of_ours_exists() -> None:
    found = 0
    skipped: set[str] = set()
    for path in TEXTS:
        for dotted in re.findall(r"`((?:outbox|worker|collector)\.[A-Za-z_][\w.]*)`", read(path)):
            if dotted in NOT_PYTHON_NAMES:
                skipped.add(dotted)
                continue
            try:
                found += _resolve(dotted) is not None
            except AttributeError as e:
                pytest.fail(f"{path.name}: `{dotted}` names nothing ({e})")
    assert found >= 5
    assert skipped == NOT_PYTHON_NAMES  # the list names only what the texts still say


def test_the_guarantees_name_the_steps_and_the_proof_tests_that_exist() -> None:
    text = read(ROOT / "docs" / "guarantees.md")
    assert f"each of the {len(STEPS)} steps of `worker.pacing.STEPS`" in text
    named = set(re.findall(r"\(`(test_[a-z_]+)`\)", text))
    assert len(named) == 7
    for test in named:
        assert (ROOT / "tests" / "proof" / f"{test}.py").exists(), test


def test_the_configuration_page_names_every_variable() -> None:
    text = read(ROOT / "docs" / "configuration.md")
    for variable in (*config.VARIABLES, "HELIOS_COLLECTOR_DB"):
        assert f"| `{variable}` |" in text, variable


def test_the_worker_page_documents_every_option() -> None:
    text = read(ROOT / "docs" / "worker.md")
    options = [o for p in worker_cli.params for o in p.opts if o.startswith("--")]
    assert len(options) >= 10
    for option in options:
        assert f"`{option}" in text, option
