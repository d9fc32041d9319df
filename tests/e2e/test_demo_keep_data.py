"""`netqos demo`, stopped, then `netqos demo --keep-data`: the second run's batches are stored.

The simulated probes start their seq at 0 on every run; each run sends a fresh instance id,
as a real agent with a new queue does, so the second run is not taken for a redelivery.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

PROBES = 5


def run_demo(tmp_path: Path, *extra: str) -> None:
    env = {
        **os.environ,
        "NETQOS_API__PORT": str(free_port()),
        "NETQOS_MQTT__EMBEDDED__PORT": str(free_port()),
        "NETQOS_API__TOKENS": '["e2e-keep-data-token"]',
    }
    netqos = Path(sys.executable).with_name("netqos")
    args = ["--probes", str(PROBES), "--interval", "2", "--backfill-minutes", "1", "--duration", "8"]
    proc = subprocess.run(
        [str(netqos), "demo", *args, *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def batches_by_instance(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT instance, count(*) FROM probe_batches GROUP BY instance").fetchall()
    return {str(i): int(n) for i, n in rows}


def test_demo_again_with_keep_data_stores_the_second_run(tmp_path: Path) -> None:
    db = tmp_path / "var" / "demo.db"
    run_demo(tmp_path)
    first = batches_by_instance(db)
    assert len(first) == 1 and "" not in first
    assert sum(first.values()) >= PROBES  # every probe sent at least its seq 0
    run_demo(tmp_path, "--keep-data")
    second = {i: n for i, n in batches_by_instance(db).items() if i not in first}
    assert len(second) == 1 and sum(second.values()) >= PROBES
    with sqlite3.connect(db) as conn:
        (stored_seq0,) = conn.execute("SELECT count(*) FROM probe_batches WHERE seq = 0").fetchone()
        (offline,) = conn.execute("SELECT count(*) FROM probes WHERE status = 'offline'").fetchone()
        (conflicts,) = conn.execute("SELECT coalesce(sum(seq_conflicts_total), 0) FROM probes").fetchone()
    assert stored_seq0 == 2 * PROBES  # each probe's seq 0, once per run
    assert offline == 0
    assert conflicts == 0  # told apart by instance, not by content
