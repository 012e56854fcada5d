"""What a second user needs to run the installed commands (``outbox``, ``outbox-worker``,
``outbox-collector``), where it can reach them.

Tests that drop root (``setpriv --reuid=65534``) to act as "another user" must not run
``.venv/bin/outbox`` from the clone: a clone in a folder only its owner may enter (a 0700
home, ``mktemp -d``) cannot be opened by that user, and the test would check "Permission
denied" instead of what it names. ``Runtime.build()`` lays out, in a fresh world-readable
folder under the temp dir, what a wheel install holds: the project's packages (with
``schema.sql`` inside ``outbox/``, as the wheel ships it), the files of every runtime
dependency (``[project.dependencies]`` and theirs, no extras), and one script per
``[project.scripts]`` entry that runs them with ``-I -S`` (isolated: no site-packages of the
interpreter, no ``PYTHON*`` variables), so only what a plain install provides is importable.

The interpreter is this one's base interpreter when the other user can run it and sees the
same standard library; else the system's ``pythonX.Y`` of the same version (a pyenv
Python in root's 0700 home is not reachable by ``nobody``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
DROP = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


class Unavailable(RuntimeError):
    """The other user cannot be given a working interpreter; the message says why."""


def as_other_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``nobody`` when this process is root (else as this user)."""
    if os.geteuid() != 0:
        return argv
    return [shutil.which("setpriv") or "setpriv", *DROP, *argv]


def _prefix_seen(python: str, *, other: bool) -> str | None:
    """``sys.prefix`` as ``python`` computes it for this user or for the other one."""
    argv = [python, "-I", "-S", "-c", "import sqlite3, sys; print(sys.prefix)"]
    try:
        r = subprocess.run(
            as_other_user(argv) if other else argv,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
        )
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def interpreter() -> str:
    """A Python of this version that the other user can run with its own standard library."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    candidates = [base, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    tried = []
    for python in dict.fromkeys(candidates):
        if not os.access(python, os.X_OK):
            continue
        tried.append(python)
        mine = _prefix_seen(python, other=False)
        # An interpreter whose own files are out of reach may still start, on another
        # installation's standard library: refuse it.
        if mine is not None and _prefix_seen(python, other=True) == mine:
            return python
    raise Unavailable(
        f"no {version} that user {NOBODY} can run with its own standard library "
        f"(tried {', '.join(tried) or 'none'}); install Debian's {version} "
        f"(apt-get install -y --no-install-recommends {version}), or run the tests "
        "with a Python outside a private home folder"
    )


def _runtime_distributions(project: str, extras: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions ``project`` (with ``extras``) needs at run time,
    transitively; the dependencies' own extras are not followed."""

    def wanted(requirement: str, extras: tuple[str, ...]) -> Requirement | None:
        req = Requirement(requirement)
        marker = req.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *extras)):
            return req
        return None

    seen: dict[str, metadata.Distribution] = {}
    todo = [r for r in (wanted(x, extras) for x in metadata.requires(project) or []) if r]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo += [r for r in (wanted(x, ()) for x in dist.requires or []) if r]
    return list(seen.values())


def _open_up(folder: Path) -> None:
    """Folders 0755, files 0644 (a clone made with umask 077 has 0600 files)."""
    for dirpath, _, filenames in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


@dataclass
class Runtime:
    """A wheel-like install of this checkout that user ``nobody`` can run."""

    folder: Path
    python: str

    @property
    def site(self) -> Path:
        return self.folder / "site"

    def script(self, name: str) -> Path:
        return self.folder / "bin" / name

    @classmethod
    def build(cls, extras: tuple[str, ...] = ()) -> Runtime:
        """Lay it out; ``extras`` adds those extras' dependencies (``("collector",)``)."""
        python = interpreter()
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        project = pyproject["project"]
        wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
        folder = Path(tempfile.mkdtemp(prefix="outbox-other-user-"))
        runtime = cls(folder, python)
        try:
            site = runtime.site
            skip = shutil.ignore_patterns("__pycache__", "*.pyc")
            for package in wheel["packages"]:
                shutil.copytree(ROOT / package, site / package, ignore=skip)
            for source, target in wheel.get("force-include", {}).items():
                shutil.copy(ROOT / source, site / target)
            for dist in _runtime_distributions(project["name"], extras):
                base = Path(str(dist.locate_file("")))
                for entry in dist.files or []:
                    if ".." in entry.parts or entry.suffix == ".pyc":
                        continue
                    target = site / entry
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(base / entry, target)
            _open_up(folder)
            (folder / "bin").mkdir(mode=0o755)
            for name, entry_point in project["scripts"].items():
                module, function = entry_point.split(":")
                script = runtime.script(name)
                script.write_text(
                    f"#!{python} -IS\n"
                    "import sys\n"
                    f"sys.path[:0] = [{str(site)!r}]\n"
                    f"from {module} import {function}\n"
                    f"sys.exit({function}())\n"
                )
                script.chmod(0o755)
            folder.chmod(0o755)
        except BaseException:
            runtime.remove()
            raise
        return runtime

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def reachable(path: Path) -> bool:
    """Whether a user who is neither owner nor in the group may read ``path``: every
    folder above it searchable by others, the file readable by others (mode bits)."""
    real = Path(os.path.realpath(path))
    folders_ok = all(os.stat(p).st_mode & stat.S_IXOTH for p in real.parents)
    return folders_ok and bool(os.stat(real).st_mode & stat.S_IROTH)
