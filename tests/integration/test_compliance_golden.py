"""Golden scenarios: every indicator of every profile, data placed just under, exactly at and
just over its limit, and at its minimum sample count -1 and +1.

Every expected value below is worked out by hand from the regulation's text
(compliance/standards/profiles/*.yaml restate it; docs/api.md "Methods" says how shares, medians
and minimums are counted) and written as a literal or as the arithmetic a person would do
on paper; nothing is computed with the project's functions. The samples go through the real
ingest pipeline (probe batches in the columnar form both MQTT decoders produce, SNMP-style
samples for the routers), one flush, into a store; the answers come from the compliance API.

Each case is its own (operator, commune) group: a commune code per case, one probe in it
(two for the radio case merged across series). Samples are a second apart from 2 July 2025
00:00 UTC, so the large cases span many minutes, hours and two UTC days, well inside July
in Vietnam time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from collector.core import keys_of
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import METRIC_NAMES, Decoded
from collector.pipeline import IngestPipeline
from collector.store.sqlite import SQLiteStore
from collector.store.store import Store, open_store
from collector.store.tiers import TierPolicy, TierRoller
from compliance.profiles import Standards, share_counters
from tests.department_data import VIEWER, auth, settings_with_keys

T0 = int(datetime(2025, 7, 2, 0, 0, tzinfo=UTC).timestamp() * 1000)
NAN = float("nan")
# A value just under a share threshold but in the same sketch bucket: the old reading counted
# it as passing. Checked below (test_premise_same_bucket), not assumed.
RSRP_JUST_UNDER = -115.4
DL_JUST_UNDER_5M = 4.97e6
DL_JUST_UNDER_30M = 29.9e6

Runs = list[tuple[float, int]]  # (value, how many)


@dataclass
class Case:
    commune: str
    technology: str
    operator: str = "viettel"
    # metric -> runs; the runs of every metric are laid out in order, measurement i at T0 + i s.
    # Metrics of one case are independent measurements (a measurement carries one metric).
    metrics: dict[str, Runs] = field(default_factory=dict)
    probes: int = 1  # >1: the samples are dealt round-robin to that many probes in the commune
    devices: dict[str, Runs] = field(default_factory=dict)  # router metric -> runs (SNMP path)
    step_s: int = 1  # seconds between a metric's consecutive samples


def n_of(runs: Runs) -> int:
    return sum(n for _, n in runs)


CASES: dict[str, Case] = {
    # ---- QCVN 81:2019 (4G, viettel: Vd 15, Vu 10, Vdmin 5 Mbit/s) ----------------------------
    # Radio availability: share of RSRP samples >= -115 dBm, >= 95 %, at least 100,000 samples.
    "R_under": Case("81001", "4G", metrics={"rsrp_dbm": [(-115.0, 94_999), (RSRP_JUST_UNDER, 5_001)]}),
    "R_at": Case("81002", "4G", metrics={"rsrp_dbm": [(-115.0, 95_000), (RSRP_JUST_UNDER, 5_000)]}, probes=2),
    "R_over": Case("81003", "4G", metrics={"rsrp_dbm": [(-115.0, 95_001), (RSRP_JUST_UNDER, 4_999)]}),
    "R_nminus": Case("81004", "4G", metrics={"rsrp_dbm": [(-90.0, 99_999)]}),
    "R_nplus": Case("81005", "4G", metrics={"rsrp_dbm": [(-115.0, 95_002), (RSRP_JUST_UNDER, 4_999)]}),
    # Access failure rate <= 5 % over >= 1,500 attempts; access time <= 5 s, mean over the
    # successful attempts, the 1,500 counting every attempt (the failed ones have no time).
    "X_under": Case(
        "81011", "4G", metrics={"access_failed": [(1.0, 74), (0.0, 1426)], "access_time_ms": [(4999.0, 1426)]}
    ),
    "X_at": Case(
        "81012", "4G", metrics={"access_failed": [(1.0, 75), (0.0, 1425)], "access_time_ms": [(5000.0, 1425)]}
    ),
    "X_over": Case(
        "81013", "4G", metrics={"access_failed": [(1.0, 76), (0.0, 1424)], "access_time_ms": [(5001.0, 1424)]}
    ),
    "X_nminus": Case(
        "81014", "4G", metrics={"access_failed": [(0.0, 1499)], "access_time_ms": [(1000.0, 1499)]}
    ),
    "X_nplus": Case(
        "81015", "4G", metrics={"access_failed": [(1.0, 75), (0.0, 1426)], "access_time_ms": [(1000.0, 1426)]}
    ),
    # Mean download >= Vd (15), upload >= Vu (10); 300 samples (our minimum).
    "M_under": Case("81021", "4G", metrics={"dl_bps": [(14.99e6, 300)], "ul_bps": [(9.99e6, 300)]}),
    "M_at": Case("81022", "4G", metrics={"dl_bps": [(15e6, 300)], "ul_bps": [(10e6, 300)]}),
    "M_over": Case("81023", "4G", metrics={"dl_bps": [(15.01e6, 300)], "ul_bps": [(10.01e6, 300)]}),
    "M_nminus": Case("81024", "4G", metrics={"dl_bps": [(20e6, 299)], "ul_bps": [(20e6, 299)]}),
    "M_nplus": Case("81025", "4G", metrics={"dl_bps": [(20e6, 301)], "ul_bps": [(20e6, 301)]}),
    # Share of downloads >= Vdmin (5 Mbit/s) >= 95 %; 300 samples (ours).
    "S_under": Case("81031", "4G", metrics={"dl_bps": [(5e6, 284), (DL_JUST_UNDER_5M, 16)]}),
    "S_at": Case("81032", "4G", metrics={"dl_bps": [(5e6, 285), (DL_JUST_UNDER_5M, 15)]}),
    "S_over": Case("81033", "4G", metrics={"dl_bps": [(5e6, 286), (DL_JUST_UNDER_5M, 14)]}),
    # ---- QCVN 126:2021 (5G) ---------------------------------------------------------------------
    # Mean dl >= 100, ul >= 30 Mbit/s, latency <= 50 ms, access failures <= 5 %; 300 (ours).
    "F_under": Case(
        "12601",
        "5G",
        metrics={
            "dl_bps": [(99.99e6, 300)],
            "ul_bps": [(29.99e6, 300)],
            "rtt_ms": [(49.99, 300)],
            "access_failed": [(1.0, 14), (0.0, 286)],
        },
    ),
    "F_at": Case(
        "12602",
        "5G",
        metrics={
            "dl_bps": [(100e6, 300)],
            "ul_bps": [(30e6, 300)],
            "rtt_ms": [(50.0, 300)],
            "access_failed": [(1.0, 15), (0.0, 285)],
        },
    ),
    "F_over": Case(
        "12603",
        "5G",
        metrics={
            "dl_bps": [(100.01e6, 300)],
            "ul_bps": [(30.01e6, 300)],
            "rtt_ms": [(50.01, 300)],
            "access_failed": [(1.0, 16), (0.0, 284)],
        },
    ),
    "F_nminus": Case(
        "12604",
        "5G",
        metrics={
            "dl_bps": [(200e6, 299)],
            "ul_bps": [(50e6, 299)],
            "rtt_ms": [(10.0, 299)],
            "access_failed": [(0.0, 299)],
        },
    ),
    "F_nplus": Case(
        "12605",
        "5G",
        metrics={
            "dl_bps": [(200e6, 301)],
            "ul_bps": [(50e6, 301)],
            "rtt_ms": [(10.0, 301)],
            "access_failed": [(0.0, 301)],
        },
    ),
    # Share of downloads >= 30 Mbit/s >= 95 %.
    "Q_under": Case("12611", "5G", metrics={"dl_bps": [(30e6, 284), (DL_JUST_UNDER_30M, 16)]}),
    "Q_at": Case("12612", "5G", metrics={"dl_bps": [(30e6, 285), (DL_JUST_UNDER_30M, 15)]}),
    "Q_over": Case("12613", "5G", metrics={"dl_bps": [(30e6, 286), (DL_JUST_UNDER_30M, 14)]}),
    # ---- QCVN 34:2022 (FTTH, viettel's example contract 100/100 Mbit/s: limits 80 / 80) ---------
    # Mean dl >= 0.8 Vd, ul >= 0.8 Vu, latency <= 50 ms; 1,000 samples.
    "B_under": Case(
        "3401",
        "FTTH",
        metrics={"dl_bps": [(79.99e6, 1000)], "ul_bps": [(79.99e6, 1000)], "rtt_ms": [(49.99, 1000)]},
        step_s=90,
    ),
    "B_at": Case(
        "3402",
        "FTTH",
        metrics={"dl_bps": [(80e6, 1000)], "ul_bps": [(80e6, 1000)], "rtt_ms": [(50.0, 1000)]},
        step_s=90,
    ),
    "B_over": Case(
        "3403",
        "FTTH",
        metrics={"dl_bps": [(80.01e6, 1000)], "ul_bps": [(80.01e6, 1000)], "rtt_ms": [(50.01, 1000)]},
        step_s=90,
    ),
    "B_nminus": Case(
        "3404",
        "FTTH",
        metrics={"dl_bps": [(100e6, 999)], "ul_bps": [(100e6, 999)], "rtt_ms": [(10.0, 999)]},
        step_s=90,
    ),
    # 1,000 samples at the limits, all within one hour, and spread over only 23 hours (a
    # sample every 82 s from 07:00: the last at 05:45 next day) instead of 24 (every 90 s).
    "B_onehour": Case("3406", "FTTH", metrics={"dl_bps": [(80e6, 1000)], "ul_bps": [(80e6, 1000)]}),
    "B_23h": Case("3407", "FTTH", metrics={"dl_bps": [(80e6, 1000)], "ul_bps": [(80e6, 1000)]}, step_s=82),
    "B_nplus": Case(
        "3405",
        "FTTH",
        metrics={"dl_bps": [(100e6, 1001)], "ul_bps": [(100e6, 1001)], "rtt_ms": [(10.0, 1001)]},
        step_s=90,
    ),
    # Link occupancy (other links) <= 80 %: the busiest interface's mean utilisation among the
    # commune's routers, 300 samples (ours) counted over both directions.
    "D_under": Case(
        "3411",
        "FTTH",
        devices={"if_in_utilisation_ratio": [(0.7999, 300)], "if_out_utilisation_ratio": [(0.5, 300)]},
    ),
    "D_at": Case(
        "3412",
        "FTTH",
        devices={"if_in_utilisation_ratio": [(0.8, 300)], "if_out_utilisation_ratio": [(0.5, 300)]},
    ),
    "D_over": Case(
        "3413",
        "FTTH",
        devices={"if_in_utilisation_ratio": [(0.8001, 300)], "if_out_utilisation_ratio": [(0.5, 300)]},
    ),
    "D_nminus": Case(
        "3414",
        "FTTH",
        devices={"if_in_utilisation_ratio": [(0.5, 150)], "if_out_utilisation_ratio": [(0.5, 149)]},
    ),
    "D_nplus": Case(
        "3415",
        "FTTH",
        devices={"if_in_utilisation_ratio": [(0.5, 150)], "if_out_utilisation_ratio": [(0.5, 151)]},
    ),
    # ---- Decision 1110/2024 (4G median >= 40 Mbit/s; 5G >= 100: see F_*), 300 samples -----------
    "E_under": Case("11101", "4G", metrics={"dl_bps": [(39.6e6, 300)]}),
    "E_at": Case("11102", "4G", metrics={"dl_bps": [(40e6, 300)]}),
    "E_over": Case("11103", "4G", metrics={"dl_bps": [(40.4e6, 300)]}),
    "E_pair": Case("11104", "4G", metrics={"dl_bps": [(39e6, 1), (41e6, 1)]}),
    "E_even": Case("11105", "4G", metrics={"dl_bps": [(39e6, 150), (41e6, 150)]}),
    "E_nminus": Case("11106", "4G", metrics={"dl_bps": [(50e6, 299)]}),
    "E_nplus": Case("11107", "4G", metrics={"dl_bps": [(50e6, 301)]}),
}


def _expand(runs: Runs) -> list[float]:
    return [v for v, n in runs for _ in range(n)]


def ingest(
    store: Store, cases: dict[str, Case], *, counters: bool = True, t0: int = T0, seq_base: int = 0
) -> IngestPipeline:
    """Register the probes and push every case's samples through one pipeline flush (a new
    pipeline each call, as after a restart: `seq_base` keeps its batches new)."""
    std = Standards.load()
    probes = [
        ProbeInfo(
            f"g{c.commune}-{k}", c.commune, f"{c.commune}-v1", f"site-{c.commune}", c.operator, c.technology
        )
        for c in cases.values()
        # A routers-only case still registers its probes (without data): devices count towards
        # an (operator, commune) group of probes, they make no group of their own.
        for k in range(c.probes)
    ]
    store.register_probes(probes)
    pipe = IngestPipeline(store, IngestSettings(), share_counters=share_counters(std) if counters else None)
    for case in cases.values():
        ids = [f"g{case.commune}-{k}" for k in range(case.probes)]
        seq = dict.fromkeys(ids, seq_base)
        for metric, runs in case.metrics.items():
            col = METRIC_NAMES.index(metric)
            values = _expand(runs)
            for start in range(0, len(values), 5000):
                per_probe: dict[str, list[int]] = {p: [] for p in ids}
                for i in range(start, min(start + 5000, len(values))):
                    per_probe[ids[i % len(ids)]].append(i)
                for pid, idx in per_probe.items():
                    if not idx:
                        continue
                    row = [NAN] * len(METRIC_NAMES)
                    rows = []
                    for i in idx:
                        row[col] = values[i]
                        rows.append(tuple(row))
                    ts = [t0 + i * 1000 * case.step_s for i in idx]
                    pipe.accept(
                        Decoded(
                            pid,
                            seq[pid],
                            [("speedtest.example.vn", case.technology, case.operator)] * len(idx),
                            ts,
                            rows,
                            max(ts),
                            min(ts),
                        )
                    )
                    seq[pid] += 1
        for metric, runs in case.devices.items():
            key = SeriesKey.of(
                metric,
                f"rtr-{case.commune}",
                {
                    "kind": "router",
                    "operator": case.operator,
                    "commune": case.commune,
                    "site": f"s{case.commune}",
                },
            )
            local = np.array([pipe.series.index(key, 60.0)], dtype=np.int64)
            for i, v in enumerate(_expand(runs)):
                pipe.accept_samples(local, t0 + i * 1000, np.array([v]))
    asyncio.run(pipe.flush())
    return pipe


def roll_and_prune(store: Store) -> None:
    """Compute the hour and day tiers, then drop every minute and hour row: the day tier alone
    must give the same answers (the cases lie on whole UTC days inside July)."""
    far = T0 + 400 * 86_400_000
    roller = TierRoller(store, TierPolicy(retention_days={60: 0.0, 3600: 0.0, 86_400: None}))
    for _ in range(4):  # hours, then the days they mark (one call does both); bounded
        roller.roll(now_ms=far)
        if not roller.pending():
            break
    assert roller.pending() == {}
    roller.enforce_retention(now_ms=far)
    tiers = {r for (r,) in store.reader().execute("SELECT DISTINCT resolution_s FROM rollups")}
    assert tiers == {86_400}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite-minutes"),
        pytest.param("postgresql", id="postgresql-days", marks=pytest.mark.services),
    ],
)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The cases ingested into SQLite and read from its 1-minute rollups, and into PostgreSQL
    and read from the 1-day tier alone (minutes and hours computed, then pruned)."""
    if request.param == "sqlite":
        store: Store = SQLiteStore(tmp_path_factory.mktemp("golden") / "netqos.db")
        drop = None
    else:
        pg = request.getfixturevalue("postgres")
        name = pg.create_database()
        store, drop = open_store(pg.store_settings(name)), (pg, name)
    try:
        ingest(store, CASES)
        if request.param == "postgresql":
            roll_and_prune(store)
        with TestClient(create_app(settings_with_keys(), store)) as c:
            yield c
    finally:
        store.close()
        if drop is not None:
            drop[0].drop_database(drop[1])


def rows(
    client: TestClient, technology: str, profile: str | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    params = {"period": "2025-07", "technology": technology}
    if profile:
        params["profile"] = profile
    r = client.get("/api/v1/compliance", params=params, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    commune_case = {c.commune: k for k, c in CASES.items()}
    return {
        (commune_case[x["commune"]], x["indicator"]): x
        for x in r.json()["rows"]
        if x["commune"] in commune_case
    }


def check(got: dict[str, Any], value: float | None, status: str, count: int) -> None:
    if value is None:
        assert got["value"] is None
    else:
        assert got["value"] == pytest.approx(value, rel=1e-9, abs=1e-9), got
    assert (got["status"], got["sample_count"]) == (status, count), got


def test_premise_same_bucket() -> None:
    """The just-under values share their threshold's sketch bucket: a sketch alone cannot
    tell them from the threshold (what made the old shares read 100 %)."""
    for under, thr in ((RSRP_JUST_UNDER, -115.0), (DL_JUST_UNDER_5M, 5e6), (DL_JUST_UNDER_30M, 30e6)):
        assert under < thr
        k = keys_of(np.array([under, thr]))
        assert k[0] == k[1]


def test_qcvn81_radio_availability(client: TestClient) -> None:
    got = rows(client, "4G")
    ind = "radio_availability"
    # 94,999 of 100,000 at >= -115 dBm: 94.999 % < 95 %.
    check(got["R_under", ind], 94.999, "fail", 100_000)
    # 95,000 of 100,000 (over two probes): exactly 95 %, at the limit and the minimum.
    check(got["R_at", ind], 95.0, "pass", 100_000)
    check(got["R_over", ind], 95.001, "pass", 100_000)
    # One sample short of the regulation's 100,000: no verdict, whatever the share.
    check(got["R_nminus", ind], 100.0, "insufficient_data", 99_999)
    check(got["R_nplus", ind], 100 * 95_002 / 100_001, "pass", 100_001)
    for case in ("R_under", "R_at", "R_over", "R_nplus"):
        assert got[case, ind]["approximate"] is False
        assert got[case, ind]["threshold"] == -115.0
    r = got["R_at", ind]
    assert r["unverified"] is True and "limit" in r["unverified_what"]  # the -115 dBm is ours
    assert "samples taken outdoors while moving (the regulation's drive test)" in r["not_checked"]


def test_qcvn81_access(client: TestClient) -> None:
    got = rows(client, "4G")
    # Failure rate = failed / attempts: 74/1500 = 4.933 %, 75/1500 = 5 %, 76/1500 = 5.067 %.
    check(got["X_under", "access_failure"], 100 * 74 / 1500, "pass", 1500)
    check(got["X_at", "access_failure"], 5.0, "pass", 1500)
    check(got["X_over", "access_failure"], 100 * 76 / 1500, "fail", 1500)
    check(got["X_nminus", "access_failure"], 0.0, "insufficient_data", 1499)
    check(got["X_nplus", "access_failure"], 100 * 75 / 1501, "pass", 1501)
    # Access time: the mean over successful attempts, the minimum over all attempts. The
    # issue's case: 1,500 attempts with 75 failures (1,425 times of 5 s) is judged, and passes.
    check(got["X_under", "access_time"], 4.999, "pass", 1500)
    check(got["X_at", "access_time"], 5.0, "pass", 1500)
    check(got["X_over", "access_time"], 5.001, "fail", 1500)
    check(got["X_nminus", "access_time"], 1.0, "insufficient_data", 1499)
    check(got["X_nplus", "access_time"], 1.0, "pass", 1501)
    for ind in ("access_failure", "access_time"):
        r = got["X_at", ind]
        assert r["min_samples"] == 1500 and "min_samples" not in r["unverified_what"]
        assert r["not_checked"] == ["the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving"]


def test_qcvn81_speeds(client: TestClient) -> None:
    got = rows(client, "4G")
    check(got["M_under", "dl_mean"], 14.99, "fail", 300)
    check(got["M_at", "dl_mean"], 15.0, "pass", 300)
    check(got["M_over", "dl_mean"], 15.01, "pass", 300)
    check(got["M_nminus", "dl_mean"], 20.0, "insufficient_data", 299)
    check(got["M_nplus", "dl_mean"], 20.0, "pass", 301)
    check(got["M_under", "ul_mean"], 9.99, "fail", 300)
    check(got["M_at", "ul_mean"], 10.0, "pass", 300)
    check(got["M_over", "ul_mean"], 10.01, "pass", 300)
    check(got["M_nminus", "ul_mean"], 20.0, "insufficient_data", 299)
    check(got["M_nplus", "ul_mean"], 20.0, "pass", 301)
    # Share >= Vdmin: 284/300 = 94.667 %, 285/300 = 95 %, 286/300 = 95.333 %: exact, although
    # the 4.97 Mbit/s samples sit in the 5 Mbit/s bucket (a sketch alone said 100 %).
    check(got["S_under", "dl_share_min"], 100 * 284 / 300, "fail", 300)
    check(got["S_at", "dl_share_min"], 95.0, "pass", 300)
    check(got["S_over", "dl_share_min"], 100 * 286 / 300, "pass", 300)
    check(got["M_nminus", "dl_share_min"], 100.0, "insufficient_data", 299)
    check(got["M_nplus", "dl_share_min"], 100.0, "pass", 301)
    assert got["S_at", "dl_share_min"]["approximate"] is False
    assert got["S_at", "dl_share_min"]["threshold"] == 5e6
    # The 300 minimum is ours, and the profile's date too: both say so.
    assert set(got["M_at", "dl_mean"]["unverified_what"]) >= {"min_samples", "effective_from"}
    # Not measured by the probes at all.
    check(got["M_at", "dropped_transfer"], None, "not_measured", 0)


def test_qcvn126(client: TestClient) -> None:
    got = rows(client, "5G")
    for ind, under, at, over in (
        ("dl_mean", 99.99, 100.0, 100.01),
        ("ul_mean", 29.99, 30.0, 30.01),
    ):
        check(got["F_under", ind], under, "fail", 300)
        check(got["F_at", ind], at, "pass", 300)
        check(got["F_over", ind], over, "pass", 300)
    check(got["F_under", "latency_mean"], 49.99, "pass", 300)
    check(got["F_at", "latency_mean"], 50.0, "pass", 300)
    check(got["F_over", "latency_mean"], 50.01, "fail", 300)
    check(got["F_under", "access_failure"], 100 * 14 / 300, "pass", 300)
    check(got["F_at", "access_failure"], 5.0, "pass", 300)
    check(got["F_over", "access_failure"], 100 * 16 / 300, "fail", 300)
    for ind, v in (("dl_mean", 200.0), ("ul_mean", 50.0), ("latency_mean", 10.0), ("access_failure", 0.0)):
        check(got["F_nminus", ind], v, "insufficient_data", 299)
        check(got["F_nplus", ind], v, "pass", 301)
    check(got["Q_under", "dl_share_min"], 100 * 284 / 300, "fail", 300)
    check(got["Q_at", "dl_share_min"], 95.0, "pass", 300)
    check(got["Q_over", "dl_share_min"], 100 * 286 / 300, "pass", 300)
    check(got["F_nminus", "dl_share_min"], 100.0, "insufficient_data", 299)
    check(got["F_nplus", "dl_share_min"], 100.0, "pass", 301)
    assert "min_samples" in got["F_at", "dl_mean"]["unverified_what"]  # 300 is ours


def test_qcvn34(client: TestClient) -> None:
    got = rows(client, "FTTH")
    for ind, under, at, over, ok_under, ok_over in (
        ("dl_mean", 79.99, 80.0, 80.01, "fail", "pass"),
        ("ul_mean", 79.99, 80.0, 80.01, "fail", "pass"),
        ("latency_mean", 49.99, 50.0, 50.01, "pass", "fail"),
    ):
        check(got["B_under", ind], under, ok_under, 1000)
        check(got["B_at", ind], at, "pass", 1000)
        check(got["B_over", ind], over, ok_over, 1000)
    for ind, v in (("dl_mean", 100.0), ("ul_mean", 100.0), ("latency_mean", 10.0)):
        check(got["B_nminus", ind], v, "insufficient_data", 999)
        check(got["B_nplus", ind], v, "pass", 1001)
    assert got["B_at", "dl_mean"]["limit"] == pytest.approx(80.0)  # 0.8 x the contracted 100
    assert "spread_hours" in got["B_at", "dl_mean"]["unverified_what"]  # "every hour" is our reading
    assert "min_samples" not in got["B_at", "dl_mean"]["unverified_what"]  # the regulation's 1,000
    assert "min_samples" in got["B_at", "latency_mean"]["unverified_what"]  # ours
    # The 100/100 Mbit/s contract is the declared-speeds file's example: every row resting on it says so.
    assert "declared_speed" in got["B_at", "dl_mean"]["unverified_what"]
    assert "declared_speed" not in got["B_at", "latency_mean"]["unverified_what"]
    # Busiest interface's mean utilisation, % (in 79.99 / 80 / 80.01, out 50).
    check(got["D_under", "link_occupancy"], 79.99, "pass", 600)
    check(got["D_at", "link_occupancy"], 80.0, "pass", 600)
    check(got["D_over", "link_occupancy"], 80.01, "fail", 600)
    check(got["D_nminus", "link_occupancy"], 50.0, "insufficient_data", 299)
    check(got["D_nplus", "link_occupancy"], 50.0, "pass", 301)
    for ind in ("service_availability", "link_occupancy_international"):
        check(got["B_at", ind], None, "not_measured", 0)


def test_qcvn34_samples_spread_over_the_hours(client: TestClient, request: pytest.FixtureRequest) -> None:
    """Samples in 1 or 23 of the 24 hours of the day: no verdict (insufficient_data, saying
    why). Once the hour-level rollups are pruned the spread cannot be told: the verdict
    stands on the samples and the row lists the condition as not checked."""
    got = rows(client, "FTTH")
    pruned = "postgresql" in request.node.callspec.id  # that store keeps the day tier only
    for case, hours in (("B_onehour", 1), ("B_23h", 23)):
        for ind in ("dl_mean", "ul_mean"):
            r = got[case, ind]
            if pruned:
                check(r, 80.0, "pass", 1000)
                assert any("no longer kept" in x for x in r["not_checked"]), r
            else:
                check(r, 80.0, "insufficient_data", 1000)
                assert f"samples in {hours} of the 24 hours of the day (UTC+7)" in r["note"], r
    if not pruned:
        assert not any("hours" in x for x in got["B_at", "dl_mean"]["not_checked"])
    check(got["B_onehour", "latency_mean"], None, "insufficient_data", 0)


def test_decision1110_medians(client: TestClient) -> None:
    got = rows(client, "4G", "decision-1110-2024")
    ind = "dl_median"
    check(got["E_under", ind], 39.6, "fail", 300)
    check(got["E_at", ind], 40.0, "pass", 300)
    check(got["E_over", ind], 40.4, "pass", 300)
    check(got["E_nminus", ind], 50.0, "insufficient_data", 299)
    check(got["E_nplus", ind], 50.0, "pass", 301)
    # {39, 41}: the median is (39 + 41) / 2 = 40 (the lower median said 39).
    check(got["E_pair", ind], 40.0, "insufficient_data", 2)
    assert got["E_pair", ind]["approximate"] is False
    # 150 x 39 and 150 x 41: conventional median 40; the two middle samples come from their
    # sketch buckets (1 % each), so the value is 40 within 1 % and says it is approximate.
    even = got["E_even", ind]
    assert even["value"] == pytest.approx(40.0, rel=0.01) and even["approximate"] is True
    g5 = rows(client, "5G", "decision-1110-2024")
    check(g5["F_at", ind], 100.0, "pass", 300)
    check(g5["F_under", ind], 99.99, "fail", 300)
    check(g5["F_over", ind], 100.01, "pass", 300)
    check(g5["F_nminus", ind], 200.0, "insufficient_data", 299)
    check(g5["F_nplus", ind], 200.0, "pass", 301)


def test_ingest_counts_every_share_threshold_of_the_profiles() -> None:
    """From the profiles' text: QCVN 81 radio availability RSRP >= -115 dBm (4G, any operator);
    QCVN 81 downloads >= Vdmin, per operator (5, 5, 5 and 0.256 Mbit/s declared in 2023);
    QCVN 126 downloads >= 30 Mbit/s (5G)."""
    assert share_counters(Standards.load()).rules == {
        ("rsrp_dbm", "4G", ""): (-115.0,),
        ("dl_bps", "4G", "viettel"): (5e6,),
        ("dl_bps", "4G", "mobifone"): (5e6,),
        ("dl_bps", "4G", "vnpt"): (5e6,),
        ("dl_bps", "4G", "vietnamobile"): (256_000.0,),
        ("dl_bps", "5G", ""): (30e6,),
    }


def test_profiles_say_their_dates_are_ours(client: TestClient) -> None:
    r = client.get("/api/v1/compliance", params={"period": "2025-07"}, headers=auth(VIEWER))
    profiles = r.json()["profiles"]
    assert {p["id"] for p in profiles} == {"qcvn-81-2019", "qcvn-126-2021", "qcvn-34-2022"}
    for p in profiles:
        assert p["effective_from_unverified"] is True and "do not give the day" in p["effective_from_note"]


def test_csv_lists_the_marks(client: TestClient) -> None:
    r = client.get(
        "/api/v1/compliance",
        params={"period": "2025-07", "technology": "4G", "format": "csv"},
        headers=auth(VIEWER),
    )
    assert r.status_code == 200
    text = r.text
    assert "approximate" in text.splitlines()[0] and "not_checked" in text.splitlines()[0]
    assert "the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving" in text


def _answer(store: Store, technology: str) -> dict[str, tuple[Any, ...]]:
    from compliance.evaluate import Scope, evaluate
    from compliance.profiles import parse_period

    std = Standards.load()
    prof = std.regulation_for(technology, parse_period("2025-07").start)
    assert prof is not None
    out = {}
    for r in evaluate(store, std, prof, parse_period("2025-07"), Scope(technology)):
        if r.indicator.stat == "share_at_least":
            out[f"{r.place}/{r.indicator.id}"] = (r.value, r.status, r.sample_count, r.approximate)
    return out


SHARE_CASES = {
    # 285 of 300 at >= 5 Mbit/s over two probes (merged across series), exactly 95 %.
    "S2": Case("82001", "4G", metrics={"dl_bps": [(5e6, 285), (DL_JUST_UNDER_5M, 15)]}, probes=2),
    "S3": Case("82002", "4G", metrics={"dl_bps": [(5e6, 284), (DL_JUST_UNDER_5M, 16)]}),
}


def test_shares_exact_through_tiers_on_both_backends(store_settings: Any) -> None:
    """Counters merge exactly across series and time and through 1 min -> 1 h -> 1 day, on
    SQLite and PostgreSQL; without counters the threshold's bucket fails, marked approximate."""
    store = open_store(store_settings)
    try:
        # Two flushes a day apart (merged across time), S2 over two probes (across series).
        ingest(store, SHARE_CASES)
        ingest(store, SHARE_CASES, t0=T0 + 86_400_000, seq_base=1000)
        exact = {
            "82001/dl_share_min": (pytest.approx(100 * 570 / 600), "pass", 600, False),
            "82002/dl_share_min": (pytest.approx(100 * 568 / 600), "fail", 600, False),
        }
        got = _answer(store, "4G")
        assert {k: got[k] for k in exact} == exact
        # 2 x (300 + 300) samples sent; the 1,200 counter samples are not counted as sent.
        assert store.total_count() == 1200 and store.total_count(metric="dl_bps>=5000000.0") == 1200
        roll_and_prune(store)
        got = _answer(store, "4G")
        assert {k: got[k] for k in exact} == exact
    finally:
        store.close()


def test_without_counters_the_bucket_fails(tmp_path: Any) -> None:
    """A store whose samples were never counted (before this version, or a threshold added
    later): the 15 samples of 4.97 Mbit/s and the 285 of 5 Mbit/s share one bucket, which
    counts as failing: 0 %, approximate. A case with no sample in that bucket stays exact."""
    store = SQLiteStore(tmp_path / "n.db")
    try:
        cases = {
            "S2": SHARE_CASES["S2"],
            "S9": Case("82009", "4G", metrics={"dl_bps": [(6e6, 285), (4e6, 15)]}),
        }
        ingest(store, cases, counters=False)
        got = _answer(store, "4G")
        assert got["82001/dl_share_min"] == (0.0, "fail", 300, True)
        assert got["82009/dl_share_min"] == (pytest.approx(95.0), "pass", 300, False)
        # Counting starts: the new samples are counted, the old ones not; still approximate,
        # and never more than the true share (285 + 285 of 600 = 47.5 % are >= 5 Mbit/s).
        ingest(store, {"S2": SHARE_CASES["S2"]}, t0=T0 + 86_400_000, seq_base=1000)
        value, status, count, approximate = got2 = _answer(store, "4G")["82001/dl_share_min"]
        assert count == 600 and approximate is True and status == "fail", got2
        assert value == pytest.approx(100 * 285 / 600)
        assert math.isfinite(value)
    finally:
        store.close()
