"""The deployment files in ``contrib/``: the systemd units and the container recipe.

No container engine runs on the machines the suite runs on, and no systemd as PID 1, so:

- the units are parsed and their hardening checked key by key, then verified by
  ``systemd-analyze verify`` and rated by ``systemd-analyze security --offline``;
- the Dockerfile is parsed and checked (pinned base, no remote ``ADD``, a non-root user,
  entry points that exist, every file the wheel needs copied and not ignored), and what
  the image promises is run for real: its entry points, as its user, on a read-only root
  where only its volume is writable (a private mount namespace), a heartbeat from the
  worker to the collector;
- docs/deployment.md is checked against both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.env import free_port
from tests.support.other_user import Runtime, Unavailable

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "contrib" / "systemd"
DOCKERFILE = ROOT / "contrib" / "docker" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPTS = PYPROJECT["project"]["scripts"]
VENV_BIN = "/opt/helios/venv/bin/"

# -- systemd units ---------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}``; comments and blank lines dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        assert not line.endswith("\\"), f"{path.name}: keep each setting on one line"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


WORKER = SYSTEMD / "helios-telemetry-worker.service"
COLLECTOR = SYSTEMD / "helios-collector.service"
UNITS = [WORKER, COLLECTOR]

#: What every unit must say, exactly: no privileges, nothing writable but the state
#: directory, no devices, no kernel knobs, a system-call filter.
HARDENING = {
    "NoNewPrivileges": ["yes"],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "PrivateMounts": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectHostname": ["yes"],
    "ProtectProc": ["invisible"],
    "ProcSubset": ["pid"],
    "CapabilityBoundingSet": [""],
    "AmbientCapabilities": [""],
    "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    "RestrictNamespaces": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "LockPersonality": ["yes"],
    "MemoryDenyWriteExecute": ["yes"],
    "RemoveIPC": ["yes"],
    "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    # exit 2 is a configuration error: restarting would only repeat it
    "Restart": ["on-failure"],
    "RestartPreventExitStatus": ["2"],
    "KillSignal": ["SIGTERM"],
}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_are_hardened(unit: Path) -> None:
    service = parse_unit(unit)["Service"]
    assert {k: service.get(k) for k in HARDENING} == HARDENING
    # The only writable path is the state directory; nothing opens another one.
    for key in ("ReadWritePaths", "ReadWriteDirectories", "BindPaths", "ExecStartPre"):
        assert key not in service, key
    [state] = service["StateDirectory"]
    assert service["StateDirectoryMode"] == ["0750"]
    [start] = service["ExecStart"]
    program, *_ = shlex.split(start)
    assert program.startswith(VENV_BIN) and program.removeprefix(VENV_BIN) in SCRIPTS
    assert parse_unit(unit)["Install"] == {"WantedBy": ["multi-user.target"]}
    assert state and "/" not in state


def _environment(service: dict[str, list[str]]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in service.get("Environment", []))


def test_the_worker_runs_as_the_apps_user_in_the_apps_state_directory() -> None:
    """The app writes the same outbox: same user, same folder, same environment file."""
    service = parse_unit(WORKER)["Service"]
    assert (service["User"], service["Group"], service["StateDirectory"]) == (
        ["helios"],
        ["helios"],
        ["helios"],
    )
    assert "DynamicUser" not in service  # it would move /var/lib/helios out of the app's reach
    assert _environment(service) == {"HELIOS_TELEMETRY_DB": "/var/lib/helios/telemetry.db"}
    assert service["EnvironmentFile"] == ["-/etc/helios/helios.env"]
    assert service["ExecStart"] == [VENV_BIN + "outbox-worker"]
    assert service["UMask"] == ["0027"]


def test_the_collector_runs_as_a_dynamic_user_on_loopback() -> None:
    service = parse_unit(COLLECTOR)["Service"]
    assert service["DynamicUser"] == ["yes"]
    assert service["PrivateUsers"] == ["yes"]
    assert "User" not in service
    assert _environment(service) == {
        "HELIOS_COLLECTOR_DB": "/var/lib/helios-collector/collector.db"
    }
    assert service["StateDirectory"] == ["helios-collector"]
    assert service["EnvironmentFile"] == ["-/etc/helios-collector/collector.env"]
    assert service["ExecStart"] == [VENV_BIN + "outbox-collector --host 127.0.0.1 --port 8080"]
    assert service["UMask"] == ["0077"]


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip(
            "systemd-analyze is not installed (Debian's systemd package; "
            "scripts/install-system-packages installs it)"
        )
    return found


def _runnable_copy(unit: Path, folder: Path) -> Path:
    """The unit with ExecStart= aimed at this checkout's venv (verify checks that the
    program exists): the only line that differs."""
    lines = unit.read_text(encoding="utf-8").splitlines()
    here = str(Path(sys.executable).parent) + "/"
    changed = [
        line.replace(VENV_BIN, here, 1) if line.startswith("ExecStart=" + VENV_BIN) else line
        for line in lines
    ]
    assert sum(a != b for a, b in zip(lines, changed, strict=True)) == 1
    copy = folder / unit.name
    copy.write_text("\n".join(changed) + "\n")
    return copy


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_finds_nothing(unit: Path, tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    r = subprocess.run(
        [analyze, "verify", "--man=no", str(_runnable_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown or misspelt keys are only warnings: any output at all is a failure.
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_security_rates_the_units_ok(unit: Path, tmp_path: Path) -> None:
    """Exposure 0-10 (systemd's own scale; "OK" is below 2.0). Measured with systemd 252:
    worker 1.2, collector 1.1; what is left is the network they exist for."""
    analyze = _systemd_analyze()
    r = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_runnable_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", r.stdout)
    assert m is not None, r.stdout
    assert float(m.group(1)) < 2.0 and m.group(2) == "OK", r.stdout


# -- the container recipe -----------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages, each with its instructions (continuation lines joined, comments out)."""
    stages: list[Stage] = []
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        logical += raw.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        keyword, _, arg = logical.strip().partition(" ")
        keyword, arg, logical = keyword.upper(), " ".join(arg.split()), ""
        if keyword == "FROM":
            words = arg.split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arg))
    return stages


STAGES = parse_dockerfile(DOCKERFILE)
BY_NAME = {s.name: s for s in STAGES}
TARGETS = ["worker", "collector"]


def lineage(stage: Stage) -> list[Stage]:
    """The stage and the stages it is built on, oldest first."""
    chain = [stage]
    while chain[0].base in BY_NAME:
        chain.insert(0, BY_NAME[chain[0].base])
    return chain


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for s in lineage(stage):
        for arg in s.all("ENV"):
            for item in shlex.split(arg):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_the_base_image_is_pinned_and_nothing_is_fetched_by_add() -> None:
    assert [s.name for s in STAGES] == ["build", "runtime", "worker", "collector"]
    for stage in STAGES:
        if stage.base in BY_NAME:
            continue
        # an exact release (X.Y.Z) or a digest; never a floating tag
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base)
        assert all(kw != "ADD" for kw, _ in stage.instructions)
    assert len({s.base for s in STAGES if s.base not in BY_NAME}) == 1  # build = run time


@pytest.mark.parametrize("target", TARGETS)
def test_the_targets_run_as_an_unprivileged_user(target: str) -> None:
    chain = lineage(BY_NAME[target])
    users = [u for s in chain for u in s.all("USER")]
    assert users == ["10001:10001"]
    created = " ".join(r for s in chain for r in s.all("RUN"))
    assert "useradd --system --uid 10001 --gid helios" in created
    assert "groupadd --system --gid 10001 helios" in created
    # the user is set after everything that needs root
    runtime = BY_NAME["runtime"].instructions
    assert runtime[-1] == ("USER", "10001:10001")


@pytest.mark.parametrize(
    ("target", "script", "volume", "variable", "file"),
    [
        ("worker", "outbox-worker", "/var/lib/helios", "HELIOS_TELEMETRY_DB", "telemetry.db"),
        (
            "collector",
            "outbox-collector",
            "/var/lib/helios-collector",
            "HELIOS_COLLECTOR_DB",
            "collector.db",
        ),
    ],
)
def test_each_target_writes_only_its_volume(
    target: str, script: str, volume: str, variable: str, file: str
) -> None:
    stage = BY_NAME[target]
    [entrypoint] = stage.all("ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form: signals reach the process itself
    assert argv[0] == script and script in SCRIPTS
    assert stage.all("VOLUME") == [json.dumps([volume])]
    env = env_of(stage)
    assert env[variable] == f"{volume}/{file}"
    # no byte code written at run time (the modules are compiled in the build stage)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/helios/bin:")
    assert stage.all("STOPSIGNAL") == ["SIGTERM"]
    # the volume's folder exists in the image and belongs to the image's user
    made = " ".join(BY_NAME["runtime"].all("RUN")).split("&&")
    [install] = [c.split() for c in made if c.split()[:2] == ["install", "-d"]]
    assert install[:8] == ["install", "-d", "-o", "helios", "-g", "helios", "-m", "0750"]
    assert volume in install[8:]


def test_the_collector_listens_on_every_address_of_the_container_and_checks_its_health() -> None:
    stage = BY_NAME["collector"]
    assert json.loads(stage.all("ENTRYPOINT")[0]) == [
        "outbox-collector",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert stage.all("EXPOSE") == ["8080"]
    [health] = stage.all("HEALTHCHECK")
    assert "http://127.0.0.1:8080/healthz" in health
    assert 'Route("/healthz"' in (ROOT / "collector" / "app.py").read_text()


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern as Docker reads it: ``*`` and ``?`` stay within one path
    segment, ``**`` crosses any number of them (also none)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            c = pattern[i]
            out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
            i += 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context: the last rule that
    matches the path or a folder above it decides (Docker's rule)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = _docker_pattern(rule.removeprefix("!").strip("/"))
        if any(pattern.fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def test_the_build_copies_what_the_wheel_is_made_of_and_nothing_else() -> None:
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
        *wheel["packages"],
        *wheel["force-include"],
    }
    copied: set[str] = set()
    for arg in BY_NAME["build"].all("COPY"):
        *sources, _target = arg.split()
        copied |= {s.rstrip("/") for s in sources}
    assert copied == needed
    for top in needed:
        files = [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*.*")
        for file in files:
            path = str(file.relative_to(ROOT))
            if "__pycache__" not in path:
                assert not dockerignored(path), path
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "docs/img/insights.png"):
        assert dockerignored(heavy), heavy
    assert dockerignored("outbox/__pycache__/db.cpython-311.pyc")
    assert 'pip install ".[collector,postgres]"' in " ".join(BY_NAME["build"].all("RUN"))


# -- what the image promises, run for real ---------------------------------------------------

READ_ONLY_ROOT = """set -e
mount --rbind / /
mount -t tmpfs -o mode=0755,size=1m tmpfs /var/lib
mkdir "$1"
mount --bind "$0" "$1"
mount -o remount,ro /var/lib
mount -o remount,bind,ro /
shift
exec "$@"
"""


@dataclass
class Container:
    """A process as ``docker run --read-only -v STATE:VOLUME --user UID`` would start it:
    a private mount namespace where the root is read-only and only ``volume`` (bound from
    ``state``) is writable, running as ``uid``."""

    runtime: Runtime
    state: Path
    volume: str
    uid: str
    env: dict[str, str]

    def argv(self, *command: str) -> list[str]:
        uid, gid = self.uid.split(":")
        program, *args = command
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            READ_ONLY_ROOT,
            str(self.state),
            self.volume,
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in self.env.items()),
            str(self.runtime.script(program)),
            *args,
        ]

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*command), capture_output=True, text=True, timeout=60, cwd="/"
        )


@pytest.fixture(scope="module")
def image_runtime() -> Iterator[Runtime]:
    if os.geteuid() != 0:
        pytest.skip("a read-only root in a private mount namespace needs root (CI runs as root)")
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (util-linux, mount)")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"no private mount namespace here ({probe.stderr.strip()}); in a chroot, make "
            "its root a mount point first (mount --bind ROOT ROOT)"
        )
    try:
        runtime = Runtime.build(extras=("collector",))
    except Unavailable as e:
        pytest.skip(str(e))
    yield runtime
    runtime.remove()


@pytest.fixture
def volumes() -> Iterator[dict[str, Path]]:
    """A state folder per target, owned by the image's user, as a named volume would be."""
    made = {t: Path(tempfile.mkdtemp(prefix=f"helios-{t}-volume-")) for t in TARGETS}
    for path in made.values():
        os.chown(path, 10001, 10001)
    yield made
    for path in made.values():
        shutil.rmtree(path, ignore_errors=True)


def container(runtime: Runtime, target: str, state: Path, **env: str) -> Container:
    stage = BY_NAME[target]
    [volume] = json.loads(stage.all("VOLUME")[0])
    base = {k: v for k, v in env_of(stage).items() if k != "PATH"}
    base["PATH"] = "/usr/bin:/bin"
    *_, user = [u for s in lineage(stage) for u in s.all("USER")]
    return Container(runtime, state, volume, user, base | env)


@pytest.mark.slow
def test_the_images_entry_points_deliver_a_heartbeat_on_a_read_only_root(
    image_runtime: Runtime, volumes: dict[str, Path]
) -> None:
    port = free_port()
    collector = container(image_runtime, "collector", volumes["collector"])
    entry = json.loads(BY_NAME["collector"].all("ENTRYPOINT")[0])
    # the image listens on 0.0.0.0 inside its own network; here only loopback is used
    entry = [a.replace("0.0.0.0", "127.0.0.1").replace("8080", str(port)) for a in entry]
    url = f"http://127.0.0.1:{port}"
    log = volumes["collector"].parent / f"{volumes['collector'].name}.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            # One instance reports here: --min-instances 1 publishes its names (the default,
            # k-anonymous 3, would keep them all under "other").
            collector.argv(*entry, "--no-access-log", "--min-instances", "1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"status": "ok", "database": "sqlite"}
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        worker = container(
            image_runtime,
            "worker",
            volumes["worker"],
            HELIOS_TELEMETRY_ENABLED="true",
            HELIOS_TELEMETRY_ENDPOINT=f"{url}/api/instances/heartbeat",
        )
        # the app's side, writing the same volume
        for kind, name, count in (("command", "sync", 3), ("api", "users.list", 2)):
            tracked = worker.run("outbox", "track", kind, name, "--count", str(count))
            assert tracked.returncode == 0, tracked.stderr
        # anything written outside the volume fails: the root is read-only
        outside = worker.run("outbox", "--db", "/opt/elsewhere.db", "track", "command", "sync")
        assert (outside.returncode, outside.stderr) == (
            1,
            "Error: not stored: /opt/elsewhere.db: cannot create the outbox (Read-only file "
            "system); make the folder writable or point HELIOS_TELEMETRY_DB at a writable path\n",
        )
        [program] = json.loads(BY_NAME["worker"].all("ENTRYPOINT")[0])
        delivered = worker.run(program, "--once")
        assert delivered.returncode == 0, delivered.stderr
        assert delivered.stdout.startswith("delivered heartbeat ")
        with urllib.request.urlopen(f"{url}/api/insights", timeout=10) as r:
            insights = json.loads(r.read())
    finally:
        server.terminate()  # docker stop: SIGTERM; uvicorn shuts down, then re-raises it
        assert server.wait(30) == -signal.SIGTERM, log.read_text()
    assert "Application shutdown complete." in log.read_text()
    assert insights["instances"]["active_7d"] == 1
    assert insights["heartbeats"] == {"received": 1, "missing": 0}
    assert (insights["api_usage"], insights["command_usage"]) == ({"users.list": 2}, {"sync": 3})
    # what the two processes wrote: their volumes, owned by the image's user, nothing else
    # (SQLite's -wal and -shm stay after the collector's shutdown: a collector matter; the
    # -writer.lock file is the flock that serialises the writes of --workers processes)
    assert {p.name for p in volumes["collector"].iterdir()} <= {
        "collector.db",
        "collector.db-wal",
        "collector.db-shm",
        "collector.db-writer.lock",
    }
    assert "collector.db" in {p.name for p in volumes["collector"].iterdir()}
    assert sorted(p.name for p in volumes["worker"].iterdir()) == ["telemetry.db"]
    for path in (*volumes["collector"].iterdir(), *volumes["worker"].iterdir()):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001)


# -- docs/deployment.md quotes them ---------------------------------------------------------


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_deployment_page_quotes_the_worker_unit_as_it_is() -> None:
    section = page("deployment.md")
    [ini] = blocks(section, "ini")
    service = parse_unit(WORKER)["Service"]
    quoted = [line.split("=", 1) for line in ini.splitlines()]
    assert len(quoted) == 9
    for key, value in quoted:
        assert value in service[key], key
    # the worker's page points there instead of keeping a copy of its own
    worker = page("worker.md")
    assert "`contrib/systemd/helios-telemetry-worker.service`" in worker
    assert "(deployment.md#systemd)" in worker
    assert "```ini" not in worker


def test_the_deployment_page_names_every_deployment_file_and_they_exist() -> None:
    named = set(re.findall(r"`(contrib/[^`]+)`", page("deployment.md")))
    present = {str(p.relative_to(ROOT)) for p in (ROOT / "contrib").rglob("*") if p.is_file()}
    assert named == present


def test_the_deployment_page_docker_lines_match_the_recipe() -> None:
    [console] = [b for b in blocks(page("deployment.md"), "console") if "docker" in b]
    commands = [shlex.split(c) for c in console.replace("\\\n", " ").split("$ ")[1:]]
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    assert sorted(c[c.index("--target") + 1] for c in builds) == sorted(TARGETS)
    tags = {}
    for c in builds:
        assert c[c.index("-f") + 1] == "contrib/docker/Dockerfile" and c[-1] == "."
        tags[c[c.index("-t") + 1]] = c[c.index("--target") + 1]
    assert len(runs) == 2
    for c in runs:
        target = tags[c[-1]]
        assert "--read-only" in c
        _, volume = c[c.index("-v") + 1].split(":")
        assert [volume] == json.loads(BY_NAME[target].all("VOLUME")[0])
    bases = {s.base for s in STAGES if s.base not in BY_NAME}
    assert [f"`{b}`" for b in bases][0] in page("deployment.md")
