"""Additions to tests/department_data.py's province for the marks a signed figure carries:
a share the quantile sketch can only bound (`approximate`), and an operator report from one
of the two registered operators (a KPI that must say `incomplete`, not a value)."""

from __future__ import annotations

import asyncio

from collector.ingest_settings import IngestSettings
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.sqlite import SQLiteStore
from tests.department_data import T0

# viettel's 4G probe in B (registered by the seed, silent there): 300 downloads, 287 at 20,
# 10 at exactly 5 Mbit/s (viettel's declared Vdmin) and 3 at 4 Mbit/s. 297 of 300 are >= Vdmin
# (99 %), but this store keeps no exact counter for that threshold (the seed's pipeline counts
# none), and the sketch cannot tell the 10 samples of the threshold's bucket from values just
# below it: they count as failing, 287 / 300 = 95.667 % (>= 95 %, pass), marked approximate.
APPROX_PROBE = "p-b-vtl-4g"
APPROX_SHARE = 100 * 287 / 300
APPROX_SAMPLES = [20e6] * 287 + [5e6] * 10 + [4e6] * 3

# viettel's subscriber report for 2025 over both communes; vnpt files none, so the KPIs built
# on operator_subscribers lack an operator: incomplete, with "no ... report of vnpt".
VIETTEL_SUBSCRIBERS = (
    "commune,mobile_subscriptions,mobile_broadband_subscriptions,smartphone_subscriptions,ftth_households\n"
    "16021,400000,300000,350000,1\n15301,300000,200000,250000,1\n"
)
VNPT_MISSING = "no operator_subscribers report of vnpt for 2025"


def seed_approximate_share(store: SQLiteStore) -> None:
    """Store APPROX_SAMPLES through the real ingest pipeline, without share counters."""
    pipeline = IngestPipeline(store, IngestSettings())
    batch = validate_batch(
        {
            "v": 1,
            "probe_id": APPROX_PROBE,
            "seq": 0,
            "measurements": [
                {
                    "ts": T0 + i * 1000,
                    "target": "speedtest.example.vn",
                    "technology": "4G",
                    "operator": "viettel",
                    "metrics": {"dl_bps": v},
                }
                for i, v in enumerate(APPROX_SAMPLES)
            ],
        }
    )
    pipeline.accept(batch)
    asyncio.run(pipeline.flush())
