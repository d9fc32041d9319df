"""`/qos?step=1d` buckets are Vietnam days (00:00-24:00 UTC+7), read from the 1-day tier (whose
rows are Vietnam days), and a step past a tier's retention is empty rather than partial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from collector.core import SampleBatch, rollup
from collector.model import SeriesKey
from collector.store.store import Store
from collector.store.tiers import TierPolicy, TierRoller
from netqos.config import Settings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# 2026-11-28: 00:00 UTC is 07:00 local (the 28th); 16:59:30 UTC is 23:59:30 local (still the
# 28th); 17:00:00 UTC is 00:00 local on the 29th.
MIDNIGHT_UTC_28 = 1_795_824_000_000  # 2026-11-28T00:00:00Z
HOUR = 3_600_000
SAMPLES = {
    MIDNIGHT_UTC_28: 1,  # local 28th
    MIDNIGHT_UTC_28 + 17 * HOUR - 30_000: 3,  # local 28th, 30 s before its end
    MIDNIGHT_UTC_28 + 17 * HOUR: 2,  # local 29th, its first instant
}


def fill(path: Path) -> Store:
    store = Store(path)
    (sid,) = store.series_ids([SeriesKey.of("rtt_ms", "p1", {"commune": "16021", "operator": "vnpt"})])
    ts = np.repeat(np.asarray(list(SAMPLES), dtype=np.int64), list(SAMPLES.values()))
    store.write_rollups(rollup(SampleBatch(np.full(ts.shape, sid, np.int32), ts, np.ones(ts.shape))), 60)
    return store


def day_query(c: TestClient) -> Any:
    params = {
        "metric": "rtt_ms",
        "stat": "count",
        "step": "1d",
        "from": "2026-11-28T00:00:00+07:00",
        "to": "2026-11-30T00:00:00+07:00",
    }
    r = c.get("/api/v1/qos", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_day_step_is_a_vietnam_day(tmp_path: Path) -> None:
    store = fill(tmp_path / "q.db")
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    try:
        with TestClient(create_app(settings, store)) as c:
            before = day_query(c)  # days and hours pending: read from the minute rows
            TierRoller(store, TierPolicy(settle_s=0)).roll(now_ms=MIDNIGHT_UTC_28 + 10 * 24 * HOUR)
            after = day_query(c)  # the hour and day rows computed
            days = store.reader().execute("SELECT window_start_ms FROM rollups WHERE resolution_s = 86400")
            assert sorted(w for (w,) in days) == [MIDNIGHT_UTC_28 - 7 * HOUR, MIDNIGHT_UTC_28 + 17 * HOUR]
            for body in (before, after):
                assert body["resolution_s"] == 86_400
                (series,) = body["series"]
                points = series["points"]
                assert [p["ts"] for p in points] == ["2026-11-27T17:00:00Z", "2026-11-28T17:00:00Z"]
                assert [p["count"] for p in points] == [4, 2]
            # Two hours: still aligned to the local clock (local 22:00-24:00 is 15:00-17:00 UTC).
            r = c.get(
                "/api/v1/qos",
                params={
                    "metric": "rtt_ms",
                    "stat": "count",
                    "step": "2h",
                    "from": "2026-11-28T15:00:00Z",
                    "to": "2026-11-28T19:00:00Z",
                },
                headers=AUTH,
            ).json()
            assert [p["count"] for p in r["series"][0]["points"]] == [3, 2]
    finally:
        store.close()


def test_steps_past_the_hour_tiers_retention_are_empty(tmp_path: Path) -> None:
    store = fill(tmp_path / "q.db")
    TierRoller(store, TierPolicy(settle_s=0)).roll(now_ms=MIDNIGHT_UTC_28 + 10 * 24 * HOUR)
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    # Hours kept a day: the data (long before today) is past the horizon; its rows, still
    # there (retention has not run yet), must not show as if the steps were whole.
    settings.rollups.minute_retention_days = 1.0
    settings.rollups.hour_retention_days = 1.0
    try:
        with TestClient(create_app(settings, store)) as c:
            params = {
                "metric": "rtt_ms",
                "stat": "count",
                "step": "1h",
                "from": "2026-11-28T00:00:00Z",
                "to": "2026-11-28T18:00:00Z",
            }
            body = c.get("/api/v1/qos", params=params, headers=AUTH).json()
            assert body["resolution_s"] == 3600 and body["retained_from_ms"] > MIDNIGHT_UTC_28 + 2 * 24 * HOUR
            assert [p["count"] for p in body["series"][0]["points"]] == [0] * 18
            assert day_query(c)["retained_from_ms"] is None  # the 1-day tier is kept for ever
            assert [p["count"] for p in day_query(c)["series"][0]["points"]] == [4, 2]
    finally:
        store.close()
