"""A private nginx, TLS on a loopback port, in front of an upstream: a real proxy nobody here wrote.

Recipe from ENVIRONMENT.md section 3: a throwaway CA and a server certificate for
127.0.0.1/localhost, nginx in the foreground with its own prefix, pid and temp paths.
Missing nginx is a failure naming the fix; ``HELIOS_SKIP_NGINX=1`` skips instead, except
under CI (``tests/conftest.py`` refuses the variable there).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import free_port

CONF = """worker_processes 1;
user root;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path       tmp/proxy;
    fastcgi_temp_path     tmp/fastcgi;
    uwsgi_temp_path       tmp/uwsgi;
    scgi_temp_path        tmp/scgi;
    client_max_body_size 10m;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate     server.pem;
        ssl_certificate_key server.key;
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_set_header Host $http_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout {read_timeout_ms}ms;
        }}
        # Closes the connection without an answer (nginx's 444): a reset as the sender sees it.
        location /drop/ {{
            return 444;
        }}
    }}
}}
"""


SKIP_VARIABLE = "HELIOS_SKIP_NGINX"


def nginx_binary() -> str | None:
    """The nginx executable, or None when it is not installed."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


def missing_reason() -> str:
    return (
        "nginx is not installed, and the TLS reverse-proxy tests need it: run "
        "scripts/install-system-packages (apt-get install -y --no-install-recommends nginx), "
        f"or set {SKIP_VARIABLE}=1 to skip these tests on purpose (outside CI only)"
    )


def make_ca(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 / localhost; returns the CA file.

    Writes ``ca.pem``, ``server.pem`` and ``server.key`` into ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(args, cwd=folder, check=True, capture_output=True, timeout=60)

    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=helios test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    )
    return folder / "ca.pem"


@dataclass
class Nginx:
    folder: Path
    upstream_port: int
    read_timeout: float = 5.0
    tls_port: int = 0
    ca: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    #: Where an existing ``make_ca`` output lives (made again in ``folder`` if None).
    pki: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}/api/instances/heartbeat"

    @property
    def drop_url(self) -> str:
        """A URL where nginx closes the connection without answering."""
        return f"https://127.0.0.1:{self.tls_port}/drop/api/instances/heartbeat"

    @property
    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Nginx:
        nginx = nginx_binary()
        if nginx is None:
            raise RuntimeError(missing_reason())
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "tmp").mkdir(exist_ok=True)
        if self.pki is None:
            self.ca = make_ca(self.folder)
        else:
            for name in ("ca.pem", "server.pem", "server.key"):
                shutil.copy(self.pki / name, self.folder / name)
            self.ca = self.folder / "ca.pem"
        self.tls_port = free_port()
        (self.folder / "nginx.conf").write_text(
            CONF.format(
                tls_port=self.tls_port,
                upstream_port=self.upstream_port,
                read_timeout_ms=int(self.read_timeout * 1000),
            )
        )
        prefix = f"{self.folder}/"
        subprocess.run(
            [nginx, "-t", "-p", prefix, "-c", "nginx.conf", "-e", "stderr"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        with (self.folder / "error.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [nginx, "-p", prefix, "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not start listening within 10 s: {self.error_log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
