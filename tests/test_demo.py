"""``make demo`` (examples/demo.py): the whole loop on one machine, exact totals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import child_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_runs_the_whole_loop_and_the_totals_match(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "all totals match exactly" in out
    # The offline instance kept its data two days, then delivered it all.
    assert out.count("field offline, kept") == 2
    row = next(line for line in out.splitlines() if line.startswith("field (offline"))
    # heartbeats 2 (its first one waited two days), no gaps, 3 days x 300 events each way
    assert row.split()[-5:] == ["community", "2", "0", "900", "900"]
    assert (tmp_path / "collector.db").exists()
