"""Running the suite itself: the system packages it installs, what CI refuses to skip,
where PostgreSQL is found. (The other-user install is used by tests/cli/test_errors.py.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.ci import in_ci
from tests.support.env import child_env
from tests.support.other_user import as_other_user

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-system-packages"

EVERYTHING = (
    "chromium (the browser tests), libatomic1 (Playwright's node driver), nginx (the TLS "
    "reverse-proxy tests), postgresql (the "
    "collector's PostgreSQL tests), openssl (the nginx tests' certificates), util-linux "
    "(setpriv and runuser), mount (the full-disk proof's tmpfs), e2fsprogs (chattr for the "
    "read-only outbox proof), systemd (systemd-analyze for contrib/systemd), make (the "
    "Makefile), python3 (Python 3.11+), python3-venv (python3 -m venv)"
)
APT = (
    "apt-get install -y --no-install-recommends chromium libatomic1 nginx postgresql openssl "
    "util-linux "
    "mount e2fsprogs systemd make python3 python3-venv"
)

# -- scripts/install-system-packages ---------------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Path]:
    """A world-readable folder with a copy of the script, an empty "root" where nothing is
    installed, and a ``bin`` for the few programs a case provides."""
    folder = Path(tempfile.mkdtemp(prefix="install-script-"))
    for sub in ("root", "bin"):
        (folder / sub).mkdir()
    shutil.copy(SCRIPT, folder / "install-system-packages")
    for path in (folder, folder / "root", folder / "bin"):
        path.chmod(0o755)
    (folder / "install-system-packages").chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def run_script(
    bare: Path, *args: str, programs: tuple[str, ...] = (), other_user: bool = False
) -> subprocess.CompletedProcess[str]:
    for name in programs:
        (bare / "bin" / name).symlink_to(shutil.which(name) or f"/nonexistent/{name}")
    argv = ["/bin/bash", str(bare / "install-system-packages"), *args]
    return subprocess.run(
        as_other_user(argv) if other_user else argv,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=bare,
        env={"PATH": str(bare / "bin"), "INSTALL_CHECK_ROOT": str(bare / "root")},
    )


def test_nothing_is_missing_so_nothing_is_called() -> None:
    """``make test`` ran it first: on this machine everything is there, and the check says
    nothing (it does not even look for apt-get or sudo)."""
    r = subprocess.run(
        [str(SCRIPT), "--check"], capture_output=True, text=True, timeout=30, env=child_env()
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30, env=child_env())
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_the_check_names_what_is_missing_and_what_for(bare: Path) -> None:
    r = run_script(bare, "--check")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == [
        f"install-system-packages: missing: {EVERYTHING}",
        f"install-system-packages: install them with: scripts/install-system-packages (it "
        f"runs: {APT})",
    ]


def test_without_apt_get_it_stops_and_says_so(bare: Path) -> None:
    r = run_script(bare)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"install-system-packages: missing: {EVERYTHING}",
        "install-system-packages: this script installs with apt-get (Debian, Ubuntu) and "
        "there is none here: install them with your system's package manager, then run the "
        "tests again",
    ]


def test_without_root_or_sudo_it_stops_with_the_one_command(bare: Path) -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run the script as another user")
    # apt-get is there, sudo is not (the bin folder holds only what is linked here)
    r = run_script(bare, programs=("apt-get", "id"), other_user=True)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [
        f"install-system-packages: missing: {EVERYTHING}",
        "install-system-packages: installing them needs root: run sudo "
        f"scripts/install-system-packages (it runs apt-get update, then {APT})",
    ]


def test_a_found_program_is_not_asked_for_again(bare: Path) -> None:
    """Each need is looked for on the PATH, then in the sbin folders under the root."""
    for name in ("nginx", "openssl", "setpriv", "mount", "chattr", "make"):
        (bare / "bin" / name).symlink_to("/bin/true")
    (bare / "root" / "usr" / "sbin").mkdir(parents=True)
    (bare / "root" / "usr" / "sbin" / "runuser").symlink_to("/bin/true")
    (bare / "root" / "usr" / "bin").mkdir(parents=True)
    (bare / "root" / "usr" / "bin" / "chromium").symlink_to("/bin/true")
    (bare / "root" / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (bare / "root" / "usr" / "lib" / "x86_64-linux-gnu" / "libatomic.so.1").touch()
    (bare / "root" / "usr" / "lib" / "postgresql" / "15" / "bin").mkdir(parents=True)
    (bare / "root" / "usr" / "lib" / "postgresql" / "15" / "bin" / "initdb").symlink_to("/bin/true")
    r = run_script(bare, "--check")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == (
        "install-system-packages: missing: systemd (systemd-analyze for contrib/systemd), "
        "python3 (Python 3.11+), python3-venv (python3 -m venv)"
    )


# -- under CI nothing real is skipped ----------------------------------------------------------


def pytest_run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environ = child_env(**env)
    for name in [k for k in environ if k == "CI" or k.startswith("HELIOS_SKIP_")]:
        if name not in env:
            del environ[name]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=environ,
    )


@pytest.mark.slow  # a pytest run in a subprocess
def test_a_skip_variable_under_ci_stops_the_run_before_it_starts() -> None:
    r = pytest_run("tests/proof/test_nginx_tls.py", "-q", CI="1", HELIOS_SKIP_NGINX="1")
    assert r.returncode == 4  # pytest's usage error: no test ran
    assert r.stderr.strip() == (
        "ERROR: CI is set, and so is HELIOS_SKIP_NGINX: under CI every real part runs. "
        "Unset it; install what is missing with scripts/install-system-packages."
    )


@pytest.mark.slow  # a pytest run in a subprocess
def test_a_skip_variable_outside_ci_skips_with_its_reason() -> None:
    r = pytest_run(
        "tests/collector/test_ingest.py",
        "-m",
        "postgres",
        "-k",
        "test_same_id_and_body_again_is_a_duplicate_counted_once",
        "-q",
        HELIOS_SKIP_POSTGRES="1",
    )
    assert r.returncode == 0, r.stdout
    assert "HELIOS_SKIP_POSTGRES=1: the PostgreSQL tests skipped on purpose" in r.stdout
    assert " passed" not in r.stdout.splitlines()[-1]


@pytest.mark.slow  # a pytest run in a subprocess
def test_under_ci_a_skip_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import pytest\n\n"
        "def test_needs_a_frobnicator():\n"
        "    pytest.skip('no frobnicator on this machine')\n\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_expected_to_fail():\n"
        "    assert False\n"
    )
    args = ("-p", "tests.conftest", "-ra", "-q", probe.name, "--rootdir", str(tmp_path))
    outside = pytest_run(*args, cwd=tmp_path)
    assert outside.returncode == 0, outside.stdout
    assert "SKIPPED [1] test_probe.py:4: no frobnicator on this machine" in outside.stdout
    under = pytest_run(*args, cwd=tmp_path, CI="true")
    assert under.returncode == 1, under.stdout
    assert (
        "FAILED test_probe.py::test_needs_a_frobnicator - skipped under CI, where every real "
        "part must run: no frobnicator on this machine"
    ) in under.stdout
    assert "1 failed, 1 xfailed" in under.stdout  # an expected failure stays one


@pytest.mark.parametrize(
    ("value", "strict"),
    [(None, False), ("", False), ("0", False), ("false", False), ("No", False)]
    + [("1", True), ("true", True), ("yes", True), ("github-actions", True)],
)
def test_what_counts_as_ci(
    value: str | None, strict: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is strict


# -- where PostgreSQL is found --------------------------------------------------------------


def _programs(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


def test_postgres_on_the_path_wins_and_a_link_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _programs(tmp_path / "pg" / "bin", "initdb", "pg_ctl", "postgres", "psql")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "initdb").symlink_to(real / "initdb")  # as /usr/local/bin/initdb
    _programs(tmp_path / "debian" / "15" / "bin", "initdb", "pg_ctl", "postgres")
    monkeypatch.setenv("PATH", str(tmp_path / "local"))
    monkeypatch.setattr(postgres, "DEBIAN_GLOB", str(tmp_path / "debian" / "*" / "bin" / "initdb"))
    assert postgres.find_bindir() == real


def test_postgres_in_debians_folder_newest_version_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "10", "15"):
        _programs(tmp_path / "debian" / version / "bin", "initdb", "pg_ctl", "postgres")
    _programs(tmp_path / "debian" / "16" / "bin", "initdb")  # a client-only leftover
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "DEBIAN_GLOB", str(tmp_path / "debian" / "*" / "bin" / "initdb"))
    assert postgres.find_bindir() == tmp_path / "debian" / "15" / "bin"


def test_postgres_missing_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN_GLOB", str(tmp_path / "*" / "bin" / "initdb"))
    assert postgres.find_bindir() is None
    with pytest.raises(postgres.PostgresUnavailable) as e, postgres.throwaway_cluster():
        pass
    assert str(e.value) == (
        "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin): "
        "run scripts/install-system-packages (it installs Debian's postgresql with apt-get "
        "install -y --no-install-recommends postgresql)"
    )


@pytest.mark.postgres
def test_a_throwaway_cluster_is_gone_afterwards() -> None:
    with postgres.throwaway_cluster(prefix="suite-setup-pg-") as pg:
        pg.sql("CREATE DATABASE probe")
        folder = pg.folder
        assert (pg.data / "postmaster.pid").exists()
    assert not folder.exists()
