"""A throwaway PostgreSQL cluster: ``initdb`` in a temp folder, its own port and socket
folder, stopped and deleted at the end. Used by the collector tests (``pg_dsn``) and by
``benchmarks/collector_load.py``.

The binaries are found on the PATH (an ``initdb`` there, e.g. ``/usr/local/bin``; a link is
followed to the folder holding ``pg_ctl`` and ``postgres`` too) or in Debian's versioned
folder (``/usr/lib/postgresql/N/bin``, the newest). ``initdb`` and ``pg_ctl`` refuse to
run as root, so as root they run as the ``postgres`` user (``runuser -u postgres``), which
Debian's package creates; the cluster's folder is handed to that user.

    with throwaway_cluster() as pg:
        pg.sql("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
        pg.sql("CREATE DATABASE app_test OWNER app")
        dsn = pg.dsn("app", "app-pw", "app_test")
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import free_port

#: The fix named when PostgreSQL is missing or does not start.
INSTALL = (
    "run scripts/install-system-packages (it installs Debian's postgresql with "
    "apt-get install -y --no-install-recommends postgresql)"
)
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
TIMEOUT = 120


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is missing or would not start; the message says what to do."""


def _version_key(initdb: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin/initdb`` → (15,): 9.6 < 10 < 15, not string order."""
    version = Path(initdb).parent.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def find_bindir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``, or None when not installed."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for initdb in sorted(glob.glob(DEBIAN_GLOB), key=_version_key, reverse=True):
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def missing_reason() -> str:
    return (
        "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin): "
        + INSTALL
    )


@dataclass
class Cluster:
    """A running cluster: TCP on 127.0.0.1:``port``, its socket and files in ``folder``."""

    bindir: Path
    folder: Path
    port: int
    as_root: bool

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's owner; raises ``PostgresUnavailable``."""
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        try:
            return subprocess.run(
                [*prefix, *cmd], check=True, capture_output=True, text=True, timeout=TIMEOUT
            )
        except subprocess.CalledProcessError as e:
            detail = (e.stderr or e.stdout or "").strip() or f"exit status {e.returncode}"
            raise PostgresUnavailable(f"{Path(cmd[0]).name} failed: {detail}") from e
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PostgresUnavailable(f"{Path(cmd[0]).name} failed: {e}") from e

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser ``postgres`` over the cluster's socket."""
        psql = self.bindir / "psql"
        program = str(psql) if os.access(psql, os.X_OK) else shutil.which("psql")
        if program is None:
            raise PostgresUnavailable(f"no psql next to {self.bindir}/initdb or on the PATH")
        self.run(
            program,
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            statement,
        )

    def dsn(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def throwaway_cluster(
    *, durable: bool = False, settings: Mapping[str, str] | None = None, prefix: str = "pg-"
) -> Iterator[Cluster]:
    """Make, start and finally delete a cluster.

    :param durable: keep ``fsync`` on (benchmarks); tests turn it off for speed.
    :param settings: extra server settings (``max_connections`` …), passed as ``-c``.
    :raises PostgresUnavailable: not installed, or it did not start (the server log's
        last lines are in the message).
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(missing_reason())
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root, and there is no postgres user to run initdb as (initdb "
                f"refuses root): create one (useradd --system postgres), or {INSTALL}"
            ) from None
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(bindir, folder, free_port(), as_root)
    started = False
    try:
        if as_root:
            shutil.chown(folder, "postgres", "postgres")
        initdb = [str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]
        initdb += ["--locale=C.UTF-8"] + ([] if durable else ["--no-sync"])
        cluster.run(*initdb)
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(cluster.port),
            "unix_socket_directories": str(folder),
            **({} if durable else {"fsync": "off"}),
            **(settings or {}),
        }
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log)]
        pg_ctl += ["-w", "-t", "60", "-o", " ".join(f"-c {k}={v}" for k, v in options.items())]
        try:
            cluster.run(*pg_ctl, "start")
        except PostgresUnavailable as e:
            log = cluster.log.read_text(errors="replace") if cluster.log.exists() else ""
            tail = "\n".join(log.strip().splitlines()[-5:])
            raise PostgresUnavailable(f"PostgreSQL did not start: {e}\n{tail}".strip()) from e
        started = True
        yield cluster
    finally:
        try:
            if started or (cluster.data / "postmaster.pid").exists():
                with contextlib.suppress(PostgresUnavailable):
                    cluster.stop("fast" if started else "immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def drop_collector_tables(dsn: str) -> str:
    """Drop every table of the collector in the database at ``dsn``, so that the next
    collector starts from an empty one; returns ``dsn``."""
    import sqlalchemy as sa

    from collector.schema import metadata

    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
    finally:
        engine.dispose()
    return dsn
