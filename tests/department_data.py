"""A small province whose compliance and KPI answers are worked out by hand in the tests.

Two communes (A = 16021, B = 15301), three villages, measurements in July 2025 (Vietnam
time) stored through the real ingest pipeline, a device inventory, and API keys for each
role. Every number below is chosen so the expected answers are easy to check on paper.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import SecretStr

from api.settings import ApiKey
from collector.ingest_settings import IngestSettings
from collector.inventory import Device
from collector.inventory.units import CommuneUnit, VillageUnit
from collector.model import ProbeInfo
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.devices import DeviceRepo
from collector.store.sqlite import SQLiteStore
from collector.store.units import UnitRepo
from netqos.config import Settings

A, B = "16021", "15301"
ADMIN, VIEWER, VIETTEL, VNPT = (
    "admin-token-0123456789abcdef",
    "viewer-token-0123456789abcdef",
    "viettel-token-0123456789abcdef",
    "vnpt-token-0123456789abcdef",
)
# 2025-07-01T00:00 in Vietnam = 2025-06-30T17:00Z; the samples start 1 hour later.
JULY_START_MS = int(datetime(2025, 6, 30, 17, 0, tzinfo=UTC).timestamp() * 1000)
T0 = JULY_START_MS + 3_600_000


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings_with_keys() -> Settings:
    s = Settings()
    s.api.keys = [
        ApiKey(name="dept-admin", role="admin", token=SecretStr(ADMIN)),
        ApiKey(name="dept-viewer", role="viewer", token=SecretStr(VIEWER)),
        ApiKey(name="viettel-noc", role="operator", operator="viettel", token=SecretStr(VIETTEL)),
        ApiKey(name="vnpt-noc", role="operator", operator="vnpt", token=SecretStr(VNPT)),
    ]
    s.kpi.operators = ["viettel", "vnpt"]  # the operators whose reports the KPIs expect
    return s


@dataclass
class Probe:
    probe_id: str
    commune: str
    village: str
    operator: str
    technology: str
    # metric -> list of values, each stored as one measurement `step_s` seconds apart
    samples: dict[str, list[float]] = field(default_factory=dict)
    step_s: int = 1


def probes() -> list[Probe]:
    return [
        # viettel 4G in A: dl 285 x 20 + 15 x 4 Mbit/s -> mean 19.2 >= 15, share >= 5 Mbit/s = 95 % exactly;
        # ul 300 x 10 Mbit/s = Vu exactly; access failures 75 of 1500 = 5 % exactly; access time 5 s
        # exactly; 200 RSRP samples (the profile wants 100,000).
        Probe(
            "p-a-vtl-4g",
            A,
            f"{A}-v01",
            "viettel",
            "4G",
            {
                "dl_bps": [20e6] * 285 + [4e6] * 15,
                "ul_bps": [10e6] * 300,
                "access_failed": [1.0] * 75 + [0.0] * 1425,
                "access_time_ms": [5000.0] * 1500,
                "rsrp_dbm": [-90.0] * 200,
            },
        ),
        # vnpt 4G in A: 299 dl samples (one short of 300); ul 7.9 < Vu 8; 76 of 1500 failures = 5.07 %.
        Probe(
            "p-a-vnp-4g",
            A,
            f"{A}-v02",
            "vnpt",
            "4G",
            {
                "dl_bps": [20e6] * 299,
                "ul_bps": [7.9e6] * 300,
                "access_failed": [1.0] * 76 + [0.0] * 1424,
                "access_time_ms": [1000.0] * 1500,
            },
        ),
        # viettel 4G in B: registered, never sent anything.
        Probe("p-b-vtl-4g", B, f"{B}-v01", "viettel", "4G", {}),
        # viettel 5G in A: dl 100 Mbit/s exactly; ul 29.9 < 30; rtt 50 ms exactly; no access tests.
        Probe(
            "p-a-vtl-5g",
            A,
            f"{A}-v01",
            "viettel",
            "5G",
            {"dl_bps": [100e6] * 300, "ul_bps": [29.9e6] * 300, "rtt_ms": [50.0] * 300},
        ),
        # vnpt FTTH in A: dl 80 = 0.8 x 100 exactly over 1000 samples; ul 90 over 999 samples;
        # a sample every 90 s, so they fall in all 24 hours of the day (QCVN 34's spread).
        Probe(
            "p-a-vnp-ftth",
            A,
            f"{A}-v02",
            "vnpt",
            "FTTH",
            {"dl_bps": [80e6] * 1000, "ul_bps": [90e6] * 999, "rtt_ms": [8.0] * 1000},
            step_s=90,
        ),
    ]


def devices() -> list[Device]:
    def d(i: str, op: str, kind: str, site: str, village: str) -> Device:
        return Device(
            id=i,
            host="127.0.0.1",
            credentials="c",
            operator=op,
            kind=kind,
            site=site,
            commune=A,
            village=village,
        )

    return [
        d("bts-1", "viettel", "bts", "S1", f"{A}-v01"),
        d("bts-2", "vnpt", "bts", "S1", f"{A}-v01"),  # S1 shared by two operators
        d("bts-3", "viettel", "bts", "S2", f"{A}-v02"),
        d("bts-4", "mobifone", "bts", "S3", f"{B}-v01"),
        d("rtr-1", "vnpt", "router", "S2", f"{A}-v02"),  # not a BTS: S2 stays unshared
        d("olt-1", "vnpt", "olt", "O1", f"{B}-v01"),
    ]


def seed(store: SQLiteStore) -> None:
    """Units, probes, measurements (through the ingest pipeline) and the device inventory."""
    with store.transaction() as conn:
        UnitRepo.upsert_communes(
            conn,
            [
                CommuneUnit(A, "Xã Triệu Sơn", "xa", 19.8185, 105.6012),
                CommuneUnit(B, "Xã Thọ Xuân", "xa", 19.9302, 105.5235),
            ],
        )
        UnitRepo.upsert_villages(
            conn,
            [
                VillageUnit(f"{A}-v01", "Thôn 1", A),
                VillageUnit(f"{A}-v02", "Thôn 2", A),
                VillageUnit(f"{B}-v01", "Thôn 1", B),
            ],
        )
    ps = probes()
    store.register_probes(
        ProbeInfo(p.probe_id, p.commune, p.village, f"site-{p.probe_id}", p.operator, p.technology)
        for p in ps
    )
    pipeline = IngestPipeline(store, IngestSettings())
    for p in ps:
        seq = 0
        for metric, values in p.samples.items():
            for start in range(0, len(values), 4000):
                chunk = values[start : start + 4000]
                batch = validate_batch(
                    {
                        "v": 1,
                        "probe_id": p.probe_id,
                        "seq": seq,
                        "measurements": [
                            {
                                "ts": T0 + (start + i) * 1000 * p.step_s,
                                "target": "speedtest.example.vn",
                                "technology": p.technology,
                                "operator": p.operator,
                                "metrics": {metric: v},
                            }
                            for i, v in enumerate(chunk)
                        ],
                    }
                )
                pipeline.accept(batch)
                seq += 1
    # Just outside July (23:59 on 30 June, Vietnam time): must not count. 1 Mbit/s would pull
    # viettel's mean and share down if it did.
    outside = validate_batch(
        {
            "v": 1,
            "probe_id": "p-a-vtl-4g",
            "seq": 1000,
            "measurements": [
                {
                    "ts": JULY_START_MS - 30_000,
                    "target": "speedtest.example.vn",
                    "technology": "4G",
                    "operator": "viettel",
                    "metrics": {"dl_bps": 1e6},
                }
            ],
        }
    )
    pipeline.accept(outside)
    asyncio.run(pipeline.flush())
    devs = devices()
    DeviceRepo(store).sync_inventory(devs, {x.id: x.kind for x in devs}, {x.id: 60.0 for x in devs})
