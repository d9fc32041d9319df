"""Scale-out of the API: two API processes and one `tiers` process side by side on one
PostgreSQL store. The API replicas never roll; the tiers process computes each closed window
exactly once (one `tiers_rolled` round per batch of late minute rows), and the lease that keeps
a second roller standing by is taken, refused and handed over at its expiry (both backends)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from collector.core import SampleBatch, rollup
from collector.model import SeriesKey
from collector.store import leases
from collector.store.rollups import window_start
from collector.store.store import Store, open_store
from collector.store.tiers import DAY_MS
from netqos.config import StoreSettings
from netqos.roles.tiers import LEASE, RollerLease
from tests.conftest import free_port, store_yaml, terminate
from tests.integration.test_ingest_faults import NETQOS

pytestmark = pytest.mark.integration

HOUR = 3_600_000
SERIES = 3
PENDING = "SELECT count(*) FROM rollup_pending"


def _minutes(sids: list[int], hour_start_ms: int) -> SampleBatch:
    """Three samples per series in the first three minutes of one hour."""
    n = len(sids) * 3
    return SampleBatch(
        np.repeat(np.asarray(sids, dtype=np.int32), 3),
        hour_start_ms + np.tile(np.arange(3, dtype=np.int64) * 60_000, len(sids)),
        np.arange(n, dtype=np.float64) + 1.0,
    )


def _count(store: Store, sql: str) -> int:
    return int(store.reader().execute(sql).fetchone()[0])


def _rounds(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "event=tiers_rolled" in line]


async def _until(what: str, pred: Callable[[], bool], logs: list[Path], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(pred):
            return
        await asyncio.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tails}")


@pytest.fixture
def processes(tmp_path: Path, pg_store_settings: StoreSettings) -> Iterator[tuple[list[int], list[Path]]]:
    """`serve --roles api` twice (their own ports) and `serve --roles tiers` once, one store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETQOS_")}
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for name, role, port in (
            ("api-1", "api", ports[0]),
            ("api-2", "api", ports[1]),
            ("tiers", "tiers", None),
        ):
            cfg = tmp_path / f"{name}.yaml"
            api = {"port": port} if port is not None else {}
            data = {
                "store": store_yaml(pg_store_settings),
                "api": {**api, "keys": [{"name": "noc", "role": "viewer", "token": "tiers-role-test-token"}]},
                # Every half second, windows computed as soon as they close.
                "rollups": {"roll_interval_s": 0.5, "settle_s": 0},
            }
            cfg.write_text(yaml.safe_dump(data))
            logs.append(tmp_path / f"{name}.log")
            with open(logs[-1], "wb") as out:
                argv = [NETQOS, "--config", str(cfg), "serve", "--roles", role]
                procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env))
        yield ports, logs
    finally:
        for proc in procs:
            terminate(proc)


async def test_two_api_replicas_and_one_tiers_process_roll_each_window_once(
    pg_store_settings: StoreSettings, processes: tuple[list[int], list[Path]]
) -> None:
    ports, logs = processes
    store = open_store(pg_store_settings)
    try:
        sids = store.series_ids(
            [SeriesKey.of("rtt_ms", f"p{i}", {"commune": "16021"}) for i in range(SERIES)]
        )
        # A local day two days ago: its hours and the day itself have closed.
        day = int(window_start(int(time.time() * 1000) - 2 * DAY_MS, DAY_MS))
        await asyncio.to_thread(store.write_rollups, rollup(_minutes(sids, day + 3 * HOUR)), 60)
        for log in logs:
            await _until(
                f"{log.name} started", lambda log=log: "event=service_started" in log.read_text(), logs, 60
            )
        async with httpx.AsyncClient(timeout=5) as client:
            for port in ports:  # both replicas serve, side by side
                assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200

        # Round 1: one hour window and its day, for the three series.
        await _until("the first window rolled", lambda: bool(_rounds(logs[2])), logs)
        await _until(
            "no pending marks", lambda: _count(store, "SELECT count(*) FROM rollup_pending") == 0, logs
        )
        assert _count(store, "SELECT count(*) FROM rollups WHERE resolution_s = 3600") == SERIES
        assert _count(store, "SELECT count(*) FROM rollups WHERE resolution_s = 86400") == SERIES

        # Late minute rows for another hour of the same day: that hour and the day again, once.
        await asyncio.to_thread(store.write_rollups, rollup(_minutes(sids, day + 5 * HOUR)), 60)
        await _until("the late window rolled", lambda: len(_rounds(logs[2])) >= 2, logs)
        await _until(
            "no pending marks", lambda: _count(store, "SELECT count(*) FROM rollup_pending") == 0, logs
        )
        assert _count(store, "SELECT count(*) FROM rollups WHERE resolution_s = 3600") == 2 * SERIES
        (n,) = store.reader().execute("SELECT sum(count) FROM rollups WHERE resolution_s = 86400").fetchone()
        assert int(n) == 2 * SERIES * 3  # the day holds every minute sample of both hours
        await asyncio.sleep(1.0)  # two more roll intervals: nothing left to roll, no round logged

        rounds = _rounds(logs[2])
        assert len(rounds) == 2, rounds
        assert all("windows_3600s=1 windows_86400s=1" in r for r in rounds), rounds
        tiers_log = logs[2].read_text(errors="replace")
        assert "event=tiers_active" in tiers_log
        for api_log in logs[:2]:  # the API replicas never roll, nor take the lease
            text = api_log.read_text(errors="replace")
            assert "event=tiers_rolled" not in text and "event=tiers_" not in text, text[-2000:]
        (holder,) = store.reader().execute("SELECT holder FROM leases WHERE name = ?", (LEASE,)).fetchone()
        assert holder in tiers_log
    finally:
        store.close()


def test_the_roller_lease_is_held_by_one_process_until_it_expires_or_is_given_back(
    store_settings: StoreSettings,
) -> None:
    store = open_store(store_settings)
    try:
        # Held for 10 s from t=1000 s: it expires at 1_010_000 ms.
        assert leases.hold(store, LEASE, "a", 1_000_000, 10_000)
        assert not leases.hold(store, LEASE, "b", 1_000_000, 10_000)
        assert not leases.hold(store, LEASE, "b", 1_009_999, 10_000)  # 1 ms before it expires
        assert leases.hold(store, LEASE, "a", 1_009_999, 10_000)  # the holder renews: now 1_019_999
        assert not leases.hold(store, LEASE, "b", 1_019_998, 10_000)
        assert leases.hold(store, LEASE, "b", 1_019_999, 10_000)  # expired at that very ms: taken over
        assert not leases.hold(store, LEASE, "a", 1_020_000, 10_000)
        # The alert engine's lease is another name: it is not in the way.
        assert leases.hold(store, "alert-engine", "a", 1_020_000, 10_000)

        # RollerLease: two processes, the wall clock; one rolls, the other stands by until
        # the first gives the lease back.
        with store.transaction() as conn:
            conn.execute("DELETE FROM leases")
        first, second = RollerLease(store, 60), RollerLease(store, 60)
        assert first() and not second()
        assert first() and not second()  # renewed, still refused
        first.release()
        assert second() and not first()
    finally:
        store.close()
