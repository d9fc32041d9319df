"""`/qos` groups and filters SNMP series by their interface label, as the alert rules can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from collector.core import SampleBatch, rollup
from collector.model import SeriesKey
from collector.store.store import Store
from netqos.config import Settings

TOKEN = "test-token-interface-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_795_824_000_000  # 2026-11-28T00:00:00Z, a whole minute
# (device, interface) -> samples (bit/s) in the one minute queried
SAMPLES = {
    ("sw-1", "ge-0/0/1"): [100.0, 300.0],
    ("sw-1", "ge-0/0/2"): [7.0],
    ("sw-2", "ge-0/0/1"): [50.0, 950.0, 20.0],
    ("sw-2", "ge-0/0/3"): [1.0],
}


def fill(path: Path) -> Store:
    store = Store(path)
    keys = [
        SeriesKey.of("if_in_bps", dev, {"commune": "16021", "operator": "vnpt", "interface": ifname})
        for dev, ifname in SAMPLES
    ]
    sids = store.series_ids(keys)
    ids = np.concatenate([np.full(len(v), s, np.int32) for s, v in zip(sids, SAMPLES.values(), strict=True)])
    vals = np.concatenate([np.asarray(v) for v in SAMPLES.values()])
    ts = np.full(ids.shape, T0 + 1000, np.int64)
    store.write_rollups(rollup(SampleBatch(ids, ts, vals)), 60)
    return store


def test_qos_grouped_and_filtered_by_interface(tmp_path: Path) -> None:
    store = fill(tmp_path / "q.db")
    settings = Settings()
    settings.api.tokens = [SecretStr(TOKEN)]
    base = {"metric": "if_in_bps", "stat": "max", "step": "60", "from": T0 // 1000, "to": T0 // 1000 + 60}
    try:
        with TestClient(create_app(settings, store)) as c:

            def q(**extra: str) -> dict[tuple[str, ...], tuple[float, int]]:
                r = c.get("/api/v1/qos", params={**base, **extra}, headers=AUTH)
                assert r.status_code == 200, r.text
                return {
                    tuple(s["labels"].values()): (s["points"][0]["value"], s["points"][0]["count"])
                    for s in r.json()["series"]
                }

            # Max per interface name across both switches: ge-0/0/1 is 300 (sw-1) vs 950 (sw-2).
            assert q(group_by="interface") == {
                ("ge-0/0/1",): (950.0, 5),
                ("ge-0/0/2",): (7.0, 1),
                ("ge-0/0/3",): (1.0, 1),
            }
            assert q(group_by="entity,interface", interface="ge-0/0/1") == {
                ("sw-1", "ge-0/0/1"): (300.0, 2),
                ("sw-2", "ge-0/0/1"): (950.0, 3),
            }
            assert q(interface="ge-0/0/2") == {(): (7.0, 1)}
            assert q(interface="ge-9/9/9") == {}  # no such interface: no series, as any filter
            r = c.get("/api/v1/qos", params={**base, "group_by": "ifname"}, headers=AUTH)
            assert (
                r.status_code == 422 and "ifname: not a label of any if_in_bps series" in r.json()["detail"]
            )
            r = c.get("/api/v1/qos", params={**base, "group_by": "if-name"}, headers=AUTH)
            assert r.status_code == 422 and "not a label" in r.json()["detail"]
    finally:
        store.close()
