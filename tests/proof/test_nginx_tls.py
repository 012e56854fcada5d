"""A real reverse proxy nobody here wrote: Debian's nginx, TLS with a throwaway CA, in
front of the real collector. The worker runs as a real process (``python -m worker
--once``) and trusts the CA only through ``SSL_CERT_FILE`` (httpx's ``trust_env``).

Each test asserts exactly what reached the collector (every ingest answer is
recorded by heartbeat id) and that the collector's totals equal what was tracked.

nginx missing is a failure with the fix in the message (CI installs it), unless
``HELIOS_SKIP_NGINX=1``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import certifi
import pytest

from outbox import Telemetry
from tests.proof.harness import record
from tests.proof.nginx import SKIP_VARIABLE, Nginx, make_ca, missing_reason, nginx_binary
from tests.support.collector import Collector
from tests.support.faultproxy import FaultProxy
from tests.support.outboxes import query
from tests.support.processes import run_worker, worker_env

pytestmark = pytest.mark.slow

QUICK = ["--once", "--retry-attempts", "2", "--retry-max-wait", "0.2", "--connect-timeout", "5"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if nginx_binary() is None:
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(f"{SKIP_VARIABLE}=1: nginx tests skipped on purpose")
        pytest.fail(missing_reason(), pytrace=False)
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder)
    return folder


def proxy(tmp_path: Path, pki: Path, upstream_port: int, **kw: float) -> Nginx:
    return Nginx(tmp_path / "nginx", upstream_port, pki=pki, **kw)


def trusting(db: Path, endpoint: str, ca: Path, **extra: str) -> dict[str, str]:
    """The worker's environment: the test CA is its whole trust store."""
    env = worker_env(db, endpoint, SSL_CERT_FILE=str(ca), **extra)
    env.pop("SSL_CERT_DIR", None)
    return env


def track_mix(t: Telemetry, rounds: int) -> Counter[tuple[str, str]]:
    tracked: Counter[tuple[str, str]] = Counter()
    for i in range(rounds):
        for kind, name in (("api", "users.list"), ("api", "groups.get"), ("command", "sync")):
            assert t.track(kind, name)  # type: ignore[arg-type]
            tracked[(kind, name)] += 1
        if i % 5 == 0:
            assert t.track_ui_action("bulk_edit", 3)
            tracked[("ui", "bulk_edit")] += 3
    return tracked


def pending_attempts(db: Path) -> tuple[int, str]:
    [(attempts, error)] = query(
        db, "SELECT attempts, last_error FROM heartbeats WHERE status = 'pending'"
    )
    return int(attempts), str(error)


def test_https_through_nginx_delivers_exactly_once(
    tmp_path: Path, pki: Path, collector: Collector
) -> None:
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={})
    tracked = track_mix(t, 200)
    t.close()
    started = time.monotonic()
    with proxy(tmp_path, pki, collector.port) as nginx:
        assert nginx.ca is not None
        # The public CAs only: the throwaway certificate must not be trusted.
        untrusted = run_worker(*QUICK, env=trusting(db, nginx.url, Path(certifi.where())))
        assert untrusted.returncode == 1, untrusted.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert collector.answers.log == []
        # Trusted through SSL_CERT_FILE: delivered over TLS, once.
        ok = run_worker(*QUICK, env=trusting(db, nginx.url, nginx.ca))
        assert ok.returncode == 0, ok.stderr
        [hid] = collector.answers.by_id()
        assert f"delivered heartbeat {hid} (accepted, 1 attempt(s))" in ok.stdout
        again = run_worker(*QUICK, env=trusting(db, nginx.url, nginx.ca))
        assert (again.returncode, again.stdout.strip()) == (0, "nothing to send")
    assert collector.answers.by_id() == {hid: ["accepted"]}
    assert collector.totals() == dict(tracked)
    record(
        "nginx_https",
        events_tracked=sum(tracked.values()),
        events_counted=sum(collector.totals().values()),
        tls_refused_untrusted=1,
        posts=len(collector.answers.log),
        duplicates=0,
        seconds=round(time.monotonic() - started, 2),
    )


def test_collector_down_nginx_502_then_delivered_exactly_once(
    tmp_path: Path, pki: Path, collector: Collector
) -> None:
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={})
    tracked = track_mix(t, 100)
    with proxy(tmp_path, pki, collector.port) as nginx:
        assert nginx.ca is not None
        env = trusting(db, nginx.url, nginx.ca)
        collector.stop()
        down = run_worker(*QUICK, "--retry-attempts", "3", env=env)
        assert down.returncode == 1, down.stderr
        assert "still pending (HTTP 502); it will be retried" in down.stderr
        assert pending_attempts(db) == (3, "HTTP 502")
        assert nginx.error_log.count("Connection refused") == 3
        tracked += track_mix(t, 50)  # the app keeps tracking while the collector is down
        collector.start()  # back on the same port
        up = run_worker(*QUICK, env=env)
        assert up.returncode == 0, up.stderr
    t.close()
    answers = collector.answers.by_id()
    assert len(answers) == 2 and all(a == ["accepted"] for a in answers.values())
    assert up.stdout.count("(accepted, 1 attempt(s))") == 2
    assert collector.totals() == dict(tracked)
    assert query(db, "SELECT status, attempts FROM heartbeats ORDER BY sequence") == [
        ("sent", 4),
        ("sent", 1),
    ]
    record(
        "nginx_502",
        events_tracked=sum(tracked.values()),
        events_counted=sum(collector.totals().values()),
        http_502_seen=3,
        heartbeats=2,
        duplicates=0,
    )


def test_slow_collector_nginx_504_stored_once(
    tmp_path: Path, pki: Path, collector: Collector
) -> None:
    """The collector stores the heartbeat, then answers after nginx gave up (504): the
    sender retries, the collector says ``duplicate``, nothing is counted twice."""
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={})
    tracked = track_mix(t, 100)
    t.close()
    assert collector.app is not None
    with proxy(tmp_path, pki, collector.port, read_timeout=0.3) as nginx:
        assert nginx.ca is not None
        env = trusting(db, nginx.url, nginx.ca)
        collector.app.slow_after_store = 1.5
        slow = run_worker(*QUICK, "--read-timeout", "20", env=env)
        assert slow.returncode == 1, slow.stderr
        assert "still pending (HTTP 504); it will be retried" in slow.stderr
        assert pending_attempts(db) == (2, "HTTP 504")
        assert nginx.error_log.count("upstream timed out") == 2
        collector.app.slow_after_store = 0.0
        fast = run_worker(*QUICK, env=env)
        assert fast.returncode == 0, fast.stderr
    [(hid, receipt)] = query(db, "SELECT id, receipt FROM heartbeats WHERE status='sent'")
    assert f"delivered heartbeat {hid} (duplicate, 1 attempt(s))" in fast.stdout
    assert '"status": "duplicate"' in receipt or '"status":"duplicate"' in receipt
    assert collector.answers.by_id() == {hid: ["accepted", "duplicate", "duplicate"]}
    assert collector.totals() == dict(tracked)  # stored once, counted once
    record(
        "nginx_504",
        events_tracked=sum(tracked.values()),
        events_counted=sum(collector.totals().values()),
        http_504_seen=2,
        stored_before_504=1,
        duplicates_answered=2,
        doubled=0,
    )


def test_connection_resets_through_nginx(tmp_path: Path, pki: Path, collector: Collector) -> None:
    """Resets on both sides of nginx: nginx closing on the sender (444), the upstream
    resetting before the collector saw anything, and after it stored the heartbeat."""
    db = tmp_path / "outbox" / "telemetry.db"
    t = Telemetry(db_path=db, enabled=True, environ={})
    tracked = track_mix(t, 100)
    t.close()
    faults = FaultProxy(collector.port, seed=1, weights={"reset": 1.0}).start()
    try:
        with proxy(tmp_path, pki, faults.port) as nginx:
            assert nginx.ca is not None
            # 1. nginx drops the sender's connection without an answer.
            dropped = run_worker(*QUICK, env=trusting(db, nginx.drop_url, nginx.ca))
            assert dropped.returncode == 1, dropped.stderr
            assert "Server disconnected without sending a response" in dropped.stderr
            env = trusting(db, nginx.url, nginx.ca)
            # 2. the upstream connection is reset before anything is forwarded: 502.
            reset = run_worker(*QUICK, env=env)
            assert reset.returncode == 1, reset.stderr
            assert "still pending (HTTP 502)" in reset.stderr
            assert collector.answers.log == []  # nothing reached the collector yet
            # 3. forwarded and stored, then the answer is lost in a reset: 502 again.
            faults.set_weights({"lost_after_store": 1.0})
            lost = run_worker(*QUICK, env=env)
            assert lost.returncode == 1, lost.stderr
            assert "still pending (HTTP 502)" in lost.stderr
            # 4. the way is clear: the collector knows it already.
            faults.set_weights({"pass": 1.0})
            ok = run_worker(*QUICK, env=env)
            assert ok.returncode == 0, ok.stderr
            resets_upstream = nginx.error_log.count("upstream prematurely closed") + (
                nginx.error_log.count("reset by peer")
            )
    finally:
        faults.stop()
    [(hid, attempts)] = query(db, "SELECT id, attempts FROM heartbeats")
    assert attempts == 2 + 2 + 2 + 1
    assert dict(faults.stats) == {"reset": 2, "lost_after_store": 2, "pass": 1}
    assert resets_upstream == 4
    assert collector.answers.by_id() == {hid: ["accepted", "duplicate", "duplicate"]}
    assert f"delivered heartbeat {hid} (duplicate, 1 attempt(s))" in ok.stdout
    assert collector.totals() == dict(tracked)
    record(
        "nginx_resets",
        events_tracked=sum(tracked.values()),
        events_counted=sum(collector.totals().values()),
        resets_sender_side=2,
        resets_upstream=4,
        stored_then_lost=2,
        doubled=0,
    )
